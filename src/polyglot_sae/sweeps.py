"""Sweeps over the scoring knobs, from the max-activation table alone (no re-extraction).

- beta sweep: how the top-k moves when beta lets idaf reorder more or fewer features;
- dataset-size ablation: nested seeded prefixes of the scored pairs, each scored with the
  permutation null, with bootstrap intervals (pairs resampled with replacement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from scipy.stats import kendalltau

from .corpus import seeded_order
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

    sizes: tuple[int, ...] = (100, 300, 1000)  # prefix sizes in pairs; the full set is always added
    seed: int = 0  # seed of the pair order (prefixes are nested) and of the bootstrap
    bootstrap: int = 10  # bootstrap resamples per size for the intervals
    top_k: int = 25  # overlap of each size's top-k with the full data's top-k
    q_threshold: float = 0.05  # significance level for the count of bilingual features


def _subset(maxacts: pl.DataFrame, pair_ids: np.ndarray) -> pl.DataFrame:
    """Rows of the given pairs, renumbered 0..len-1 in the given order (repeats allowed, so a
    bootstrap sample keeps each copy of a pair as its own pair)."""
    index = pl.DataFrame({"pair_id": pair_ids.astype(np.uint32),
                          "new_id": np.arange(len(pair_ids), dtype=np.uint32)})
    return (maxacts.join(index, on="pair_id").drop("pair_id").rename({"new_id": "pair_id"})
            .select("pair_id", "lang", "feature_id", "value"))


def dataset_size_ablation(maxacts: pl.DataFrame, *, pair_ids: np.ndarray, d_sae: int,
                          langs: Sequence[str], score_config: ScoreConfig, null_config,
                          config: AblationConfig) -> pl.DataFrame:
    """For each nested prefix size: significant features (q < threshold) and top-k overlap
    with the full ranking, each with a 90% bootstrap interval."""
    from .null import score_with_null

    order = seeded_order(pair_ids, config.seed)
    sizes = sorted({s for s in config.sizes if s < len(order)} | {len(order)})
    full = score_features(maxacts, n_pairs=len(order), d_sae=d_sae, langs=langs, config=score_config)
    full_top = _top(full, config.top_k)
    rng = np.random.default_rng(config.seed)

    def measure(ids: np.ndarray) -> tuple[int, float]:
        scores = score_with_null(_subset(maxacts, ids), n_pairs=len(ids), d_sae=d_sae, langs=langs,
                                 score_config=score_config, null_config=null_config)
        significant = int((scores["q_value"] < config.q_threshold).sum())
        return significant, jaccard(_top(scores, config.top_k), full_top)

    rows = []
    for size in sizes:
        prefix = order[:size]
        n_sig, overlap = measure(prefix)
        boot = np.array([measure(rng.choice(prefix, size=size, replace=True))
                         for _ in range(config.bootstrap)]) if config.bootstrap else np.empty((0, 2))
        lo, hi = (np.quantile(boot, [0.05, 0.95], axis=0) if len(boot)
                  else np.array([[n_sig, overlap], [n_sig, overlap]]))
        rows.append({"n_pairs": size, "n_significant": n_sig, "n_significant_lo": float(lo[0]),
                     "n_significant_hi": float(hi[0]), "topk_overlap": overlap,
                     "topk_overlap_lo": float(lo[1]), "topk_overlap_hi": float(hi[1])})
    return pl.DataFrame(rows)
