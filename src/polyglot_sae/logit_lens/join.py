"""The logit lens joined with the bilingual scores: does a feature that the scores call
bilingual promote the language token sets of several languages, one, or none?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from polyglot_sae.errors import InputError
from polyglot_sae.stats import ALPHA


# A feature promotes the sets of one language, of several, or of none.
SEVERAL, NEITHER = "several", "neither"


def promotes_labels(langs: Sequence[str]) -> tuple[str, ...]:
    """The values of the ``promotes`` column, in display order: each language, then several
    (at least two of them), then neither."""
    return (*langs, SEVERAL, NEITHER)


@dataclass(frozen=True)
class JoinConfig:
    """Joining the enrichment with the bilingual scores."""

    # a feature promotes a set when its q (of the chosen null, below) < alpha ...
    alpha: float = 0.05
    # ... and auc > min_auc (0.5: the set merely ranks above the rest)
    min_auc: float = 0.5
    # the language sets' names in the enrichment table are prefix + language
    # (token_sets.LanguageSetConfig.prefix)
    set_prefix: str = "lang_"
    # significant-bilingual features: alive with scores.q_value < bilingual_alpha ...
    bilingual_alpha: float = ALPHA
    # ... or, when set, alive with rank < bilingual_top_k (for scores without a null)
    bilingual_top_k: int | None = None
    # which enrichment null decides "promotes" (logit_lens.enrichment)
    null: Literal["direction", "token"] = "direction"


def join_bilingual(scores: pl.DataFrame, enrichment: pl.DataFrame, langs: Sequence[str],
                   config: JoinConfig = JoinConfig()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per feature, which languages' token sets its logit weights promote, next to whether the
    scores call it bilingual; and the crosstab of the two.

    per_feature: ``feature_id:u32, group ("bilingual", "other" or "dead"), promotes_{L}: bool
    for each language, promotes (enum ``promotes_labels(langs)``: the one language promoted,
    several or neither), auc_{L}, q_{L}`` (q of ``config.null``).
    crosstab: ``group, promotes, n_features, share`` over the alive groups (share within the
    group), every (group, promotes) cell present."""
    langs = list(langs)
    need = ["feature_id", "dead"] + (["rank"] if config.bilingual_top_k is not None else ["q_value"])
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise InputError("scores", ", ".join(missing), "missing column(s)",
                         "score with the permutation null (q_value), or set bilingual_top_k")
    q_column = "q_dir_greater" if config.null == "direction" else "q_greater"
    if q_column not in enrichment.columns:
        raise InputError("enrichment", q_column, f"missing (join null {config.null!r})",
                         "run the analysis with EnrichmentConfig.null_directions > 0, or join "
                         "with JoinConfig(null='token')")
    present = set(enrichment["set_name"].unique().to_list())
    for lang in langs:
        if f"{config.set_prefix}{lang}" not in present:
            raise InputError("enrichment", "set_name", f"no rows for set "
                             f"{config.set_prefix + lang!r}",
                             "build the language sets (token_sets.language_sets) before the test")
    if config.bilingual_top_k is not None:
        bilingual = pl.col("rank").is_not_null() & (pl.col("rank") < config.bilingual_top_k)
    else:
        bilingual = pl.col("q_value").is_not_null() & (pl.col("q_value") < config.bilingual_alpha)
    per_feature = scores.select(
        pl.col("feature_id").cast(pl.UInt32),
        pl.when(pl.col("dead")).then(pl.lit("dead")).when(bilingual).then(pl.lit("bilingual"))
        .otherwise(pl.lit("other")).alias("group"))
    for lang in langs:
        side = enrichment.filter(pl.col("set_name") == f"{config.set_prefix}{lang}").select(
            pl.col("feature_id").cast(pl.UInt32), pl.col("auc").alias(f"auc_{lang}"),
            pl.col(q_column).alias(f"q_{lang}"),
            ((pl.col(q_column) < config.alpha) & (pl.col("auc") > config.min_auc))
            .fill_null(False).alias(f"promotes_{lang}"))
        per_feature = per_feature.join(side, on="feature_id", how="left").with_columns(
            pl.col(f"promotes_{lang}").fill_null(False))
    labels = promotes_labels(langs)
    flags = [pl.col(f"promotes_{lang}") for lang in langs]
    n_promoted = pl.sum_horizontal([f.cast(pl.UInt8) for f in flags])
    which = pl.when(n_promoted >= 2).then(pl.lit(SEVERAL)).when(n_promoted == 0).then(pl.lit(NEITHER))
    for lang, flag in zip(langs, flags):
        which = which.when(flag).then(pl.lit(lang))
    per_feature = per_feature.with_columns(which.cast(pl.Enum(labels)).alias("promotes")).select(
        "feature_id", "group", *[f"promotes_{lang}" for lang in langs], "promotes",
        *[f"auc_{lang}" for lang in langs], *[f"q_{lang}" for lang in langs]).sort("feature_id")

    cells = pl.DataFrame({"group": ["bilingual"] * len(labels) + ["other"] * len(labels),
                          "promotes": pl.Series(list(labels) * 2, dtype=pl.Enum(labels))})
    counts = per_feature.filter(pl.col("group") != "dead").group_by("group", "promotes").agg(
        pl.len().cast(pl.UInt32).alias("n_features"))
    crosstab = cells.join(counts, on=["group", "promotes"], how="left").with_columns(
        pl.col("n_features").fill_null(0)).with_columns(
        (pl.col("n_features") / pl.col("n_features").sum().over("group")).fill_nan(None)
        .alias("share")).sort("group", "promotes")
    return per_feature, crosstab
