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
from pathlib import Path

import numpy as np
import polars as pl
from jaxtyping import UInt32

from polyglot_sae.corpus.pairs import seeded_order
from polyglot_sae.errors import InputError
from polyglot_sae.figures import (DEFAULT_STYLE, FigureStyle, new_figure, require_columns,
                                  save_figure, ticks_at)


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


def plot_dataset_size(
    ablation: pl.DataFrame,
    out: str | Path,
    *,
    found: str = "features bilingual at q < 0.05",
    top_k: int | None = None,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """Dataset-size ablation, two panels vs n_pairs (log x) with the subsampling interval as a
    band: the features the method finds (``found`` says what they are), and the top-k overlap
    with the full data."""
    columns = ("n_pairs", "n_found", "n_found_lo", "n_found_hi",
               "topk_overlap", "topk_overlap_lo", "topk_overlap_hi")
    require_columns(ablation, columns, "dataset-size ablation")
    ablation = ablation.sort("n_pairs")
    x = ablation["n_pairs"].cast(pl.Float64).to_numpy()
    if (x <= 0).any():
        raise InputError("dataset-size ablation", "n_pairs", "values must be > 0 for a log axis",
                         "drop the empty subsets")
    k = f"top-{top_k}" if top_k else "top-k"
    fig, axes = new_figure(style, ncols=2)
    panels = (("n_found", found),
              ("topk_overlap", f"Jaccard overlap of the {k} with the full data's"))
    for ax, (column, label) in zip(axes, panels):
        mid, lo, hi = (ablation[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
                       for c in (column, f"{column}_lo", f"{column}_hi"))
        ax.fill_between(x, lo, hi, color="C0", alpha=0.25, label="interval over subsets")
        ax.plot(x, mid, "o-", color="C0", label="estimate on the subset")
        ax.set_xscale("log")
        ticks_at(ax, x)
        ax.set_xlabel("pairs scored (log scale)")
        ax.set_ylabel(label)
        ax.set_title(label[0].upper() + label[1:])
        ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    fig.suptitle("How the bilingual features depend on the number of sentence pairs")
    caption = (
        "Each point scores the first n pairs of a seeded order; bands span the same measure "
        "over m random sets of n distinct pairs (min to max: a new set of n pairs falls inside "
        "with probability (m - 1)/(m + 1)). Overlap is with the ranking on all pairs."
    )
    return save_figure(fig, out, caption, note, style)
