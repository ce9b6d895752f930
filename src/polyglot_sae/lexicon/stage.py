"""The translation-lexicon check as a pipeline stage: does a method's top list find meaning?

A feature is *translated* when one of its top words in one language translates one of its top
words in the other, per Debian's FreeDict dictionaries (``freedict.Lexicon``). A feature's words
are the tokens its per-pair maxima sit on (``token_id`` of the max table), folded, weighted by
activation mass (``check.top_words_from_tokens``). For every method and k, precision@k is the
translated share of its top k; the base rate is that share over every supported feature (fires
with co-firing on at least ``min_cofire`` pairs), so a ranking that finds meaning beats it. With
the paired method, ``plain_rho`` is the reference it must beat (the features with enough
co-fired pairs ranked by rho alone), ``paired_verse`` its ranking before word-level evidence,
and a row ``class:{name}`` per class gives the translated share of the whole class.
Identical strings (names such as David/David) do not count: they are the shared-string
control's business, and counting them would credit a ranking for finding names.
More than two languages: every pair of languages is checked, a row per pair.
A language pair without a dictionary is skipped with a note in the table, not an error.

Memory. The max table joined with token strings grows with the corpus (315 M rows at 93,470
pairs and 262k latents), so the words and the base rate are computed in blocks of whole
features of at most ``BLOCK_ROWS`` max-table rows, one pass over the table's columns each:
every feature's rows are in one block, so the result is the one-pass result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import polars as pl

from .check import PRECISION_SCHEMA, CheckConfig, precision_at_k, precision_table
from .check import top_words_from_tokens
from .check import translated_features
from .check import translated_map
from .freedict import LexiconConfig, LexiconMissing, load_lexicon

# Max-table rows per block (module docstring: Memory): at 93,470 pairs x 262k latents, 13
# blocks and a peak of 5.9 GiB resident (bench.width_bench lexicon; the block, its strings and
# the group-by's tables, about 220 bytes a row); the one pass was 12.6 times the rows.
BLOCK_ROWS = 25_000_000
TABLE_SCHEMA = {"langs": pl.String, "method": pl.String, "k": pl.Int64, "precision": pl.Float64,
                "n": pl.Int64, "base_rate": pl.Float64, "note": pl.String}


@dataclass(frozen=True)
class LexiconCheckConfig:
    """The check's settings (config section ``lexicon``)."""

    # folder of the dictd files (freedict-{eng}-{spa}.index and .dict.dz)
    dir: str = "/usr/share/dictd"
    # words per language compared per feature
    top_words: int = 3
    # the top-k cut-offs reported
    ks: tuple[int, ...] = (25, 100, 300)
    # co-fired pairs that make a feature part of the base rate (the paired method's floor)
    min_cofire: int = 10


def supported_features(maxacts: pl.DataFrame | pl.LazyFrame, langs: Sequence[str],
                       min_cofire: int) -> list[int]:
    """Features firing in every language on at least ``min_cofire`` common pairs."""
    return (maxacts.lazy().filter(pl.col("lang").is_in(list(langs)))
            .group_by("feature_id", "pair_id").agg(n=pl.col("lang").n_unique())
            .filter(pl.col("n") == len(langs)).group_by("feature_id").len()
            .filter(pl.col("len") >= min_cofire).sort("feature_id")
            .collect()["feature_id"].to_list())


def feature_blocks(maxacts: pl.DataFrame | pl.LazyFrame,
                   block_rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """[lo, hi) feature-id ranges of at most ``block_rows`` rows each (a feature with more
    rows is a block of its own), cut from the per-feature row counts (one pass, d_sae
    groups): popular features make blocks of few features, rare ones of many."""
    counts = (maxacts.lazy().group_by("feature_id").len().sort("feature_id")
              .collect(engine="streaming"))
    ids, rows = counts["feature_id"].to_numpy(), counts["len"].to_numpy()
    blocks, lo, held = [], None, 0
    for fid, n in zip(ids.tolist(), rows.tolist()):
        if lo is not None and held + n > block_rows:
            blocks.append((lo, fid))
            lo, held = None, 0
        lo = fid if lo is None else lo
        held += n
    if lo is not None:
        blocks.append((lo, int(ids[-1]) + 1))
    return blocks


def words_and_support(maxacts: pl.DataFrame | pl.LazyFrame, vocab: pl.DataFrame,
                      langs: Sequence[str], config: LexiconCheckConfig,
                      block_rows: int = BLOCK_ROWS) -> tuple[pl.DataFrame, list[int]]:
    """(``top_words`` table, supported features) in blocks of whole features (module
    docstring: Memory)."""
    strings = vocab.lazy().select(pl.col("token_id").cast(pl.UInt32), "token_str")
    words, base = [], []
    for lo, hi in feature_blocks(maxacts, block_rows):
        part = (maxacts.lazy().filter(pl.col("feature_id").is_between(lo, hi, closed="left"))
                .select("pair_id", "feature_id", "lang", "token_id", "value")
                .collect(engine="streaming"))
        base += supported_features(part, langs, config.min_cofire)
        pieces = (part.lazy().join(strings, on="token_id", how="left")
                  .select("feature_id", "lang", "token_str", "value").collect())
        del part
        words.append(top_words_from_tokens(pieces, config=CheckConfig(top_n=config.top_words)))
        del pieces
    if not words:  # an empty max table
        return top_words_from_tokens(pl.DataFrame(schema={
            "feature_id": pl.UInt32, "lang": pl.String, "token_str": pl.String,
            "value": pl.Float32})), []
    return pl.concat(words), base


def _class_rows(paired: pl.DataFrame, translated: Mapping[int, bool],
                base: list[int]) -> pl.DataFrame:
    """One row per paired class of supported features (``method`` ``class:{name}``, k = n =
    the class' size): the translated share of the whole class."""
    rows = []
    for name in sorted(paired.filter(pl.col("rank").is_not_null())["class"].unique().to_list()):
        ids = paired.filter(pl.col("class") == name)["feature_id"].to_list()
        rows.append(precision_at_k(ids, translated, (len(ids),), method=f"class:{name}",
                                   base_features=base))
    return pl.concat(rows) if rows else pl.DataFrame(schema=PRECISION_SCHEMA)


def lexicon_check(scores: Mapping[str, pl.DataFrame], maxacts: pl.DataFrame | pl.LazyFrame,
                  vocab: pl.DataFrame, langs: Sequence[str],
                  config: LexiconCheckConfig, *, block_rows: int = BLOCK_ROWS
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(precision table ``TABLE_SCHEMA``, per-feature verdicts: langs, feature_id, translated,
    word_a, word_b, reason) for the rankings in ``scores`` (method -> scores table);
    ``block_rows``: module docstring, Memory."""
    words, base = words_and_support(maxacts, vocab, langs, config, block_rows)
    rankings = {m: s.filter(pl.col("rank").is_not_null()).sort("rank")["feature_id"].to_list()
                for m, s in scores.items()}
    if "paired" in scores:  # the reference the paired ranking must beat: rho alone, no bound
        plain = scores["paired"].filter((pl.col("n_cofire") >= config.min_cofire)
                                        & pl.col("rho").is_not_null())
        rankings["plain_rho"] = plain.sort(["rho", "feature_id"], descending=[True, False])[
            "feature_id"].to_list()
        if "rank_verse" in scores["paired"].columns:  # the ranking before word-level evidence
            rankings["paired_verse"] = (scores["paired"].filter(pl.col("rank_verse").is_not_null())
                                        .sort("rank_verse")["feature_id"].to_list())
    tables, verdicts = [], []
    for a, b in combinations(langs, 2):
        name = f"{a}-{b}"
        try:
            # identical strings are not translations here (see the module docstring)
            lexicon = load_lexicon(a, b, config.dir, LexiconConfig(identical_min_len=10**6))
        except LexiconMissing as missing:
            tables.append(pl.DataFrame({"langs": [name], "note": [f"skipped: {missing}"]}))
            continue
        per_feature = translated_features(words, lexicon, a, b, config.top_words)
        table = precision_table(rankings, translated_map(per_feature), config.ks, base)
        if "paired" in scores:
            table = pl.concat([table, _class_rows(scores["paired"], translated_map(per_feature),
                                                  base)])
        tables.append(table.with_columns(langs=pl.lit(name), note=pl.lit(None, pl.String)))
        verdicts.append(per_feature.with_columns(langs=pl.lit(name)))
    table = pl.concat([t.select([pl.col(c).cast(d) if c in t.columns else pl.lit(None, d).alias(c)
                                 for c, d in TABLE_SCHEMA.items()]) for t in tables])
    features = (pl.concat(verdicts).select("langs", pl.exclude("langs")) if verdicts
                else pl.DataFrame(schema={"langs": pl.String, "feature_id": pl.Int64,
                                          "translated": pl.Boolean, "word_a": pl.String,
                                          "word_b": pl.String, "reason": pl.String}))
    return table, features
