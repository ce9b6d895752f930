"""Sweeps over the scoring knobs and the SAEs, from the score tables alone (no re-extraction).

- beta sweep: how the top-k moves when beta lets idaf reorder more or fewer features;
- dataset-size ablation: nested seeded prefixes of the scored pairs, each scored with the
  permutation null, with bootstrap intervals (pairs resampled with replacement);
- SAE table: one row per (SAE, method), so a hook-point / width sweep reads as one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from jaxtyping import UInt32
from scipy.stats import kendalltau

from .corpus import seeded_order
from .null import NullConfig, score_with_null
from .scoring import ScoreConfig, score_features


def _top(scores: pl.DataFrame, k: int) -> set[int]:
    return set(scores.filter(pl.col("rank") < k)["feature_id"].to_list())


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def beta_sweep(maxacts: pl.DataFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str],
               config: ScoreConfig, beta_ranks: Sequence[int], top_k: int) -> pl.DataFrame:
    """Per beta rank: beta, the top-k's Jaccard overlap with the configured ranking, and
    Kendall's tau between the two bi_score orders over alive features."""
    kwargs = {"n_pairs": n_pairs, "d_sae": d_sae, "langs": langs}
    reference = score_features(maxacts, config=config, **kwargs)
    alive = ~reference["dead"].to_numpy()
    rows = []
    for beta_rank in beta_ranks:
        scores = score_features(maxacts, config=replace(config, beta_rank=beta_rank), **kwargs)
        tau = kendalltau(reference["bi_score"].to_numpy()[alive], scores["bi_score"].to_numpy()[alive])
        rows.append({"beta_rank": beta_rank, "beta": scores["beta"][0],
                     "jaccard_topk": jaccard(_top(reference, top_k), _top(scores, top_k)),
                     "kendall_tau": float(tau.statistic)})
    return pl.DataFrame(rows, schema={"beta_rank": pl.Int64, "beta": pl.Float64,
                                      "jaccard_topk": pl.Float64, "kendall_tau": pl.Float64})


@dataclass(frozen=True)
class AblationConfig:
    """Dataset-size ablation."""

    # Prefix sizes in pairs of the seeded order (nested); the full set is always added.
    sizes: tuple[int, ...] = (100, 300, 1000)
    # Seed of the pair order and of the bootstrap resamples.
    seed: int = 0
    # Bootstrap resamples per size (pairs drawn with replacement) for the 5-95% intervals.
    bootstrap: int = 10
    # Overlap (Jaccard) of each size's top-k with the full data's top-k.
    top_k: int = 25
    # Significance level of the count of bilingual features (BH q-values).
    q_threshold: float = 0.05


def _subset(maxacts: pl.DataFrame, pair_ids: UInt32[np.ndarray, " n"]) -> pl.DataFrame:
    """Rows of the given pairs, renumbered 0..len-1 in the given order (repeats allowed, so a
    bootstrap sample keeps each copy of a pair as its own pair)."""
    index = pl.DataFrame({"pair_id": pair_ids.astype(np.uint32),
                          "new_id": np.arange(len(pair_ids), dtype=np.uint32)})
    return (maxacts.join(index, on="pair_id").drop("pair_id").rename({"new_id": "pair_id"})
            .select("pair_id", "lang", "feature_id", "value"))


def dataset_size_ablation(maxacts: pl.DataFrame, *, pair_ids: UInt32[np.ndarray, " n"],
                          d_sae: int, langs: Sequence[str], score_config: ScoreConfig,
                          null_config: NullConfig, config: AblationConfig) -> pl.DataFrame:
    """Per nested prefix size: features significant at q < threshold and the top-k's overlap
    with the full ranking, each with a 5-95% bootstrap interval. ``pair_ids`` are all the
    scored pairs, including those on which nothing fired."""
    # The split table has a row per (pair, language).
    order = seeded_order(np.unique(pair_ids), config.seed)
    sizes = sorted({s for s in config.sizes if s < len(order)} | {len(order)})
    rng = np.random.default_rng(config.seed)

    def score(ids: np.ndarray) -> pl.DataFrame:
        return score_with_null(_subset(maxacts, ids), n_pairs=len(ids), d_sae=d_sae, langs=langs,
                               score_config=score_config, null_config=null_config)

    def measure(scores: pl.DataFrame) -> tuple[int, float]:
        significant = int((scores["q_value"] < config.q_threshold).sum())
        return significant, jaccard(_top(scores, config.top_k), full_top)

    # The full data is the last size and the reference of every overlap: scored once.
    full = score(order)
    full_top = _top(full, config.top_k)
    rows = []
    for size in sizes:
        prefix = order[:size]
        n_sig, overlap = measure(full if size == len(order) else score(prefix))
        boot = np.array([measure(score(rng.choice(prefix, size=size, replace=True)))
                         for _ in range(config.bootstrap)]).reshape(-1, 2)
        lo, hi = (np.quantile(boot, [0.05, 0.95], axis=0) if len(boot)
                  else np.array([[n_sig, overlap], [n_sig, overlap]]))
        rows.append({"n_pairs": size, "n_significant": n_sig, "n_significant_lo": float(lo[0]),
                     "n_significant_hi": float(hi[0]), "topk_overlap": overlap,
                     "topk_overlap_lo": float(lo[1]), "topk_overlap_hi": float(hi[1])})
    return pl.DataFrame(rows, schema={
        "n_pairs": pl.Int64, "n_significant": pl.Int64, "n_significant_lo": pl.Float64,
        "n_significant_hi": pl.Float64, "topk_overlap": pl.Float64,
        "topk_overlap_lo": pl.Float64, "topk_overlap_hi": pl.Float64})


def sae_table(entries: Sequence[dict], scores: Sequence[pl.DataFrame], *,
              q_threshold: float = 0.05) -> pl.DataFrame:
    """One row per (SAE, method): hook, layer, width, alive and significant bilingual features,
    so a hook-point / width sweep reads as one table. `entries` carry sae, hook, d_sae, method."""
    from .models import stop_layer

    rows = []
    for entry, table in zip(entries, scores):
        alive = int((~table["dead"]).sum())
        significant = (int((table["q_value"] < q_threshold).sum())
                       if "q_value" in table.columns else None)
        layer = stop_layer(entry["hook"])
        rows.append({**entry, "layer": None if layer is None else layer - 1, "n_alive": alive,
                     "n_significant": significant,
                     "share_significant": None if significant is None else significant / max(alive, 1)})
    return pl.DataFrame(rows)
