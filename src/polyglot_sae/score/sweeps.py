"""Sweeps over the scoring knobs and the SAEs, from the score tables alone (no re-extraction).

- beta sweep: how the top-k moves when beta lets idaf reorder more or fewer features;
- dataset-size ablation: nested seeded prefixes of the scored pairs, each scored with the
  permutation null, with intervals from subsets of distinct pairs (``subsample``);
- SAE table: one row per (SAE, method), so a hook-point / width sweep reads as one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import polars as pl
from jaxtyping import UInt32
from scipy.stats import kendalltau

from polyglot_sae.score.null import NullConfig, score_with_null
from polyglot_sae.score.bilingual import ScoreConfig, score_features
from polyglot_sae.subsample import SubsampleConfig, jaccard, renumber, size_ablation, top_set


_COLUMNS = ("pair_id", "lang", "feature_id", "value")


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
                     "jaccard_topk": jaccard(top_set(reference, top_k), top_set(scores, top_k)),
                     "kendall_tau": float(tau.statistic)})
    return pl.DataFrame(rows, schema={"beta_rank": pl.Int64, "beta": pl.Float64,
                                      "jaccard_topk": pl.Float64, "kendall_tau": pl.Float64})


def dataset_size_ablation(maxacts: pl.DataFrame, *, pair_ids: UInt32[np.ndarray, " n"],
                          d_sae: int, langs: Sequence[str], score_config: ScoreConfig,
                          null_config: NullConfig, config: SubsampleConfig,
                          q_threshold: float = 0.05) -> pl.DataFrame:
    """``subsample.size_ablation`` of a BI method: per nested prefix size, the features
    significant at q < ``q_threshold`` (each prefix and subset scored with its own permutation
    null) and the top-k's overlap with the full ranking, with subsampling intervals."""

    def score(ids: np.ndarray) -> pl.DataFrame:
        return score_with_null(renumber(maxacts.select(_COLUMNS), ids), n_pairs=len(ids),
                               d_sae=d_sae, langs=langs, score_config=score_config,
                               null_config=null_config)

    return size_ablation(score, lambda s: int((s["q_value"] < q_threshold).sum()),
                         pair_ids=pair_ids, config=config)


def sae_table(entries: Sequence[dict], scores: Sequence[pl.DataFrame], *,
              q_threshold: float = 0.05) -> pl.DataFrame:
    """One row per (SAE, method): hook, layer, width, alive and significant bilingual features,
    so a hook-point / width sweep reads as one table. `entries` carry sae, hook, d_sae, method."""
    from polyglot_sae.model.load import stop_layer

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
