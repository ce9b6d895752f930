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
                  config: LexiconCheckConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(precision table ``TABLE_SCHEMA``, per-feature verdicts: langs, feature_id, translated,
    word_a, word_b, reason) for the rankings in ``scores`` (method -> scores table)."""
    pieces = (maxacts.lazy().join(vocab.lazy().select(pl.col("token_id").cast(pl.UInt32),
                                                      "token_str"), on="token_id", how="left")
              .select("feature_id", "lang", "token_str", "value").collect())
    words = top_words_from_tokens(pieces, config=CheckConfig(top_n=config.top_words))
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
    base = supported_features(maxacts, langs, config.min_cofire)
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
