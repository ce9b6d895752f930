"""Every stage's per-feature columns of one SAE in one table, read from a finished run's files
(the API's ``Run.features`` and the all-features browser show it).

The paired method's columns (the recommended ranking: ``rank``, ``class``, ``rho``...,
``r_word``...) keep their names; every other stage's are prefixed by its name (``exact_rank``,
``seed_q_value``, ``monolinguality_nu_max``, ``lexicon_translated``, ``causal_verdict``,
``ablation_kl_en``, ``logit_lens_class``, ``mcs_mcs``), so nothing collides. A stage without
a file adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import polars.selectors as cs

# stage -> the per-SAE file under results/{run}/ its per-feature columns come from
STAGE_FILES = {
    # Deng et al.'s monolinguality, written beside each BI method (the same numbers for each)
    "monolinguality": "monolinguality/{sae}.{bi}.parquet",
    "lexicon": "lexicon/{sae}.features.parquet",
    "causal": "causal/{sae}.parquet",
    # the causal check's whole-dictionary pass: every alive feature ablated
    "ablation": "causal/{sae}.dictionary.parquet",
    "logit_lens": "logit_lens/{sae}.stats.parquet",
    "mcs": "mcs/{sae}.features.parquet",
}
METHODS = ("paired", "exact", "seed")


def methods_of(run_dir: Path, sae: str) -> list[str]:
    """The scoring methods with a table for this SAE."""
    return [m for m in METHODS if (run_dir / "scores" / f"{sae}.{m}.parquet").exists()]


def feature_table(run_dir: str | Path, sae: str) -> pl.DataFrame:
    """One row per feature with every stage's per-feature columns (module docstring)."""
    run_dir = Path(run_dir)
    methods = methods_of(run_dir, sae)
    first = pl.read_parquet(run_dir / "scores" / f"{sae}.{methods[0]}.parquet")
    base = first if methods[0] == "paired" else _prefixed(first, methods[0], keep=("dead",))
    for m in methods[1:]:
        base = _join(base, _prefixed(pl.read_parquet(run_dir / "scores" / f"{sae}.{m}.parquet"),
                                     m))
    for stage in STAGE_FILES:
        file = stage_file(run_dir, sae, stage)
        if file is not None:
            base = _join(base, _prefixed(_per_feature(stage, file), stage))
    return base


def stage_file(run_dir: str | Path, sae: str, stage: str) -> Path | None:
    """The file a stage's per-feature columns come from, or None when the run has none."""
    for bi in ("exact", "seed"):
        file = Path(run_dir) / STAGE_FILES[stage].format(sae=sae, bi=bi)
        if file.exists():
            return file
    return None


def _per_feature(stage: str, file: Path) -> pl.DataFrame:
    """A stage's per-feature rows (tested features only for the causal check)."""
    table = pl.read_parquet(file)
    if stage == "causal":
        table = table.filter(~pl.col("is_control")).drop("is_control")
    if stage == "ablation":  # rate and magnitude are the scores' own, by other names
        table = table.select("feature_id", cs.starts_with(
            "kl_", "dce_", "residual_", "n_dict_"))
    if stage == "monolinguality":  # one row per language: nu per language, then its max
        per_lang = table.pivot(on="lang", index="feature_id", values="nu")
        table = per_lang.rename({c: f"nu_{c}" for c in per_lang.columns if c != "feature_id"}
                                ).join(table.unique("feature_id").select(
                                    "feature_id", "nu_max", "nu_lang"), on="feature_id")
    if stage == "lexicon" and "langs" in table.columns:
        # one row per language pair: the least translated pair speaks for the feature
        table = table.sort("translated").unique("feature_id", keep="first", maintain_order=True)
    return table


def _prefixed(table: pl.DataFrame, stage: str, keep: Sequence[str] = ()) -> pl.DataFrame:
    return table.rename({c: f"{stage}_{c}" for c in table.columns
                         if c != "feature_id" and c not in keep})


def _join(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    right = right.drop([c for c in right.columns if c in left.columns and c != "feature_id"])
    right = right.with_columns(pl.col("feature_id").cast(left["feature_id"].dtype))
    return left.join(right, on="feature_id", how="left", maintain_order="left")
