"""Dataset-size ablation by subsampling without replacement, for any scoring method.

At each size n (nested prefixes of one seeded pair order, the full set always included) the
point estimate scores the prefix. Its interval runs from the smallest to the largest value of
the same measure over m random subsets of n distinct pairs drawn from all the scored pairs: the
spread a dataset of n pairs from this corpus shows. The prefix is one more such draw, so by
exchangeability it falls inside with probability (m - 1)/(m + 1), ties aside (m = 19: 90%), and
so does any new dataset of n pairs from the corpus; at the full size every subset is the full
set, and the interval is the point. Drawing with replacement (the earlier bootstrap) repeats
pairs, and a repeated pair is one pair counted twice: at 1,500 pairs the point estimate fell
above its own interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from jaxtyping import UInt32

from polyglot_sae.corpus.pairs import seeded_order


@dataclass(frozen=True)
class SubsampleConfig:
    """Sizes, subsets and the overlap measure of a dataset-size ablation."""

    # Prefix sizes in pairs of the seeded order (nested); the full set is always added.
    sizes: tuple[int, ...] = (100, 300, 1000)
    # Seed of the pair order and of the subsets.
    seed: int = 0
    # Random subsets (distinct pairs) per size behind each interval; the interval covers a new
    # dataset of that size with probability (subsets - 1) / (subsets + 1): 19 gives 90%.
    subsets: int = 19
    # Overlap (Jaccard) of each size's top-k with the full data's top-k.
    top_k: int = 25


def top_set(scores: pl.DataFrame, k: int) -> set[int]:
    """The feature ids ranked 0..k-1."""
    return set(scores.filter(pl.col("rank") < k)["feature_id"].to_list())


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def renumber(table: pl.DataFrame | pl.LazyFrame, pair_ids: UInt32[np.ndarray, " n"]) -> pl.DataFrame:
    """Rows of the given pairs with their pair ids renumbered 0..n-1 in the given order."""
    index = pl.DataFrame({"pair_id": pair_ids.astype(np.uint32),
                          "new_id": np.arange(len(pair_ids), dtype=np.uint32)})
    columns = table.lazy().collect_schema().names()
    return (table.lazy().join(index.lazy(), on="pair_id").drop("pair_id")
            .rename({"new_id": "pair_id"}).select(columns).collect())


def size_ablation(score: Callable[[np.ndarray], pl.DataFrame],
                  count: Callable[[pl.DataFrame], int], *, pair_ids: UInt32[np.ndarray, " n"],
                  config: SubsampleConfig) -> pl.DataFrame:
    """Per size: ``n_pairs, n_found`` (``count`` of the prefix's scores: features significant,
    or concept-bilingual), ``topk_overlap`` with the full ranking, each with ``_lo``/``_hi``
    from ``config.subsets`` subsets of distinct pairs. ``score(ids)`` scores the pairs
    ``ids``; ``pair_ids`` are all the scored pairs, silent ones included."""
    order = seeded_order(np.unique(pair_ids), config.seed)
    sizes = sorted({s for s in config.sizes if s < len(order)} | {len(order)})
    rng = np.random.default_rng(config.seed)
    full = score(order)
    full_top = top_set(full, config.top_k)

    def measure(scores: pl.DataFrame) -> tuple[int, float]:
        return count(scores), jaccard(top_set(scores, config.top_k), full_top)

    rows = []
    for size in sizes:
        found, overlap = measure(full if size == len(order) else score(order[:size]))
        if size == len(order):
            lo = hi = np.array([found, overlap], dtype=float)
        else:
            subs = np.array([measure(score(rng.choice(order, size=size, replace=False)))
                             for _ in range(config.subsets)], dtype=float).reshape(-1, 2)
            lo, hi = subs.min(axis=0), subs.max(axis=0)
        rows.append({"n_pairs": size, "n_found": found, "n_found_lo": float(lo[0]),
                     "n_found_hi": float(hi[0]), "topk_overlap": overlap,
                     "topk_overlap_lo": float(lo[1]), "topk_overlap_hi": float(hi[1])})
    return pl.DataFrame(rows, schema={
        "n_pairs": pl.Int64, "n_found": pl.Int64, "n_found_lo": pl.Float64,
        "n_found_hi": pl.Float64, "topk_overlap": pl.Float64,
        "topk_overlap_lo": pl.Float64, "topk_overlap_hi": pl.Float64})
