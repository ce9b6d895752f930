"""Sparse per-token activations -> the per-(pair, language) max table, one shard at a time.

Shards hold disjoint blocks of pair ids, so the maximum over a pair's tokens never spans two
files: reducing shard by shard, in pair-id order, and appending yields the whole table sorted,
with memory bounded by one shard whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from .atomic_io import read_metadata, write_parquet_parts
from .errors import InputError

MAXACTS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32,
                  "value": pl.Float32}


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


def max_parts(shards: Sequence[str | Path]) -> Iterator[pl.DataFrame]:
    """Each shard's max table, sorted by pair_id, lang, feature_id, in pair-id order."""
    for shard in _in_pair_order([str(s) for s in shards]):
        yield (pl.scan_parquet(shard)
               .group_by("pair_id", "lang", "feature_id")
               .agg(pl.col("value").max())
               .sort("pair_id", "lang", "feature_id")
               .collect(engine="streaming")
               .cast(MAXACTS_SCHEMA))


def provenance(shards: Sequence[str | Path]) -> dict:
    """The shards' shared provenance, with the total pair count."""
    metas = [read_metadata(s) for s in shards]
    meta = {k: v for k, v in metas[0].items() if k not in ("n_pairs", "shard")} if metas else {}
    meta["n_pairs"] = sum(int(m.get("n_pairs", 0)) for m in metas)
    meta["langs"] = metas[0].get("langs") if metas else None
    return meta


def reduce_max(shards: Sequence[str | Path]) -> tuple[pl.DataFrame, dict]:
    """(max table sorted by pair_id, lang, feature_id; provenance with the total pair count),
    in memory: for tests and small tables; `write_max_table` streams."""
    parts = list(max_parts(shards))
    table = pl.concat(parts) if parts else pl.DataFrame(schema=MAXACTS_SCHEMA)
    return table, provenance(shards)


def write_max_table(shards: Sequence[str | Path], out_path: str | Path) -> tuple[int, dict]:
    """Reduce `shards` into the max table at `out_path`, one shard in memory at a time;
    (rows written, provenance)."""
    meta = provenance(shards)
    rows = write_parquet_parts(max_parts(shards), out_path, MAXACTS_SCHEMA, meta,
                               byte_stream_split=["value"])
    return rows, meta


def n_pairs_of(path: str | Path, table: pl.DataFrame | pl.LazyFrame) -> int:
    """Pairs behind a max table: recorded by `reduce_max`, else the distinct pairs present
    (an undercount when some pair fired no feature at all)."""
    recorded = read_metadata(path).get("n_pairs")
    if recorded:
        return int(recorded)
    return int(table.lazy().select(pl.col("pair_id").n_unique()).collect().item())
