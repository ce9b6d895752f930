"""Sparse per-token activations -> the per-(pair, language) max table, one shard at a time.

With the shards' token tables the max table also carries ``token_id``, the token at which the
max occurred (the first such position on ties): the shared-string control of the ``paired``
method asks whether two languages' maxima sit on the same string. The token tables also give
each sentence's length (``sentence_lengths``) and the strings of the token ids (``vocab``).

Shards hold disjoint blocks of pair ids, so the maximum over a pair's tokens never spans two
files: reducing shard by shard, in pair-id order, and appending yields the whole table sorted,
with memory bounded by one shard whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet_parts
from polyglot_sae.errors import InputError

MAXACTS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32,
                  "value": pl.Float32}
MAX_TOKEN_SCHEMA = MAXACTS_SCHEMA | {"token_id": pl.UInt32}
LENGTHS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "n_tokens": pl.UInt32}
VOCAB_SCHEMA = {"token_id": pl.UInt32, "token_str": pl.String}


def _in_pair_order(shards: Sequence[str]) -> list[str]:
    """The non-empty shards ordered by pair id; refuses shards whose pair ranges overlap."""
    ranges = []
    for s in shards:
        lo, hi = (pl.scan_parquet(s)
                  .select(lo=pl.col("pair_id").min(), hi=pl.col("pair_id").max())
                  .collect().row(0))
        if lo is not None:
            ranges.append((lo, hi, s))
    ranges.sort()
    for (_, hi, a), (lo, _, b) in zip(ranges, ranges[1:]):
        if lo <= hi:
            raise InputError(b, "pair_id", f"its pairs overlap those of {a} (ids up to {hi})",
                             "give reduce disjoint shards, as the `shards` stage cuts them")
    return [s for _, _, s in ranges]


def max_parts(shards: Sequence[str | Path],
              tokens: Sequence[str | Path] | None = None) -> Iterator[pl.DataFrame]:
    """Each shard's max table, sorted by pair_id, lang, feature_id, in pair-id order; with
    ``tokens`` (each shard's token table, in the same order as ``shards``) also the max's
    ``token_id``."""
    shards = [str(s) for s in shards]
    token_of = dict(zip(shards, [str(t) for t in tokens])) if tokens is not None else None
    if token_of is not None and len(token_of) != len(shards):
        raise InputError(str(tokens), "tokens", f"{len(tokens)} token tables for {len(shards)} "
                         "activation shards", "pass one token table per shard, in shard order")
    for shard in _in_pair_order(shards):
        acts = pl.scan_parquet(shard)
        if token_of is None:
            yield (acts.group_by("pair_id", "lang", "feature_id")
                   .agg(pl.col("value").max())
                   .sort("pair_id", "lang", "feature_id")
                   .collect(engine="streaming")
                   .cast(MAXACTS_SCHEMA))
            continue
        at_max = (acts.group_by("pair_id", "lang", "feature_id")
                  .agg(pl.col("token_pos").get(pl.col("value").arg_max()),
                       pl.col("value").max()))
        toks = pl.scan_parquet(token_of[shard]).select("pair_id", "lang", "token_pos", "token_id")
        yield (at_max.join(toks, on=["pair_id", "lang", "token_pos"], how="left")
               .select(*MAX_TOKEN_SCHEMA)
               .sort("pair_id", "lang", "feature_id")
               .collect(engine="streaming")
               .cast(MAX_TOKEN_SCHEMA))


def sentence_lengths(tokens: Sequence[str | Path]) -> pl.DataFrame:
    """Tokens per (pair, language) after the BOS the token tables keep at position 0, sorted by
    pair_id, lang."""
    return (pl.scan_parquet([str(t) for t in tokens]).filter(pl.col("token_pos") > 0)
            .group_by("pair_id", "lang").agg(n_tokens=pl.len())
            .sort("pair_id", "lang").collect().cast(LENGTHS_SCHEMA))


def vocab(tokens: Sequence[str | Path]) -> pl.DataFrame:
    """The string of every token id seen in the token tables, sorted by token_id."""
    return (pl.scan_parquet([str(t) for t in tokens])
            .group_by("token_id").agg(pl.col("token_str").first())
            .sort("token_id").collect().cast(VOCAB_SCHEMA))


def provenance(shards: Sequence[str | Path]) -> dict:
    """The shards' shared provenance, with the total pair count."""
    metas = [read_metadata(s) for s in shards]
    meta = {k: v for k, v in metas[0].items() if k not in ("n_pairs", "shard")} if metas else {}
    meta["n_pairs"] = sum(int(m.get("n_pairs", 0)) for m in metas)
    meta["langs"] = metas[0].get("langs") if metas else None
    return meta


def reduce_max(shards: Sequence[str | Path],
               tokens: Sequence[str | Path] | None = None) -> tuple[pl.DataFrame, dict]:
    """(max table sorted by pair_id, lang, feature_id; provenance with the total pair count),
    in memory: for tests and small tables; `write_max_table` streams."""
    parts = list(max_parts(shards, tokens))
    schema = MAXACTS_SCHEMA if tokens is None else MAX_TOKEN_SCHEMA
    table = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return table, provenance(shards)


def write_max_table(shards: Sequence[str | Path], out_path: str | Path,
                    tokens: Sequence[str | Path] | None = None) -> tuple[int, dict]:
    """Reduce `shards` (and their token tables, for ``token_id``) into the max table at
    `out_path`, one shard in memory at a time; (rows written, provenance)."""
    meta = provenance(shards)
    schema = MAXACTS_SCHEMA if tokens is None else MAX_TOKEN_SCHEMA
    rows = write_parquet_parts(max_parts(shards, tokens), out_path, schema, meta,
                               byte_stream_split=["value"])
    return rows, meta


def n_pairs_of(path: str | Path, table: pl.DataFrame | pl.LazyFrame) -> int:
    """Pairs behind a max table: recorded by `reduce_max`, else the distinct pairs present
    (an undercount when some pair fired no feature at all)."""
    recorded = read_metadata(path).get("n_pairs")
    if recorded:
        return int(recorded)
    return int(table.lazy().select(pl.col("pair_id").n_unique()).collect().item())
