"""Figures of the MCS analysis (after the bimodality post), in the style of ``plots``: title,
labelled axes, legend and a caption on each, written atomically as PNG.

- ``plot_mcs_histogram``: a dictionary's MCS against a larger one, with the random-dictionary
  baseline and the analytic density (the post's figures 3-5);
- ``plot_mcs_ladder``: counts and shares of high- and low-MCS features by width (figures 11-12);
- ``plot_mcs_scatter``: MCS against two larger dictionaries, feature by feature (figures 9-10).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from jaxtyping import Bool, Float

from polyglot_sae.errors import InputError
from polyglot_sae.mcs.baseline import analytic_mcs_cdf, analytic_mcs_pdf, analytic_mcs_quantiles
from polyglot_sae.mcs.ladder import mcs_split
from polyglot_sae.figures import DEFAULT_STYLE, FigureStyle, new_figure, require_columns, save_figure

# Points of the analytic curves: smooth at figure resolution.
_CURVE_POINTS = 600


def plot_mcs_histogram(
    mcs: Float[np.ndarray, " m"],
    random_mcs: Float[np.ndarray, "s m_r"],
    out: str | Path,
    *,
    k_dim: int,
    m_draws: int,
    label: str = "learned",
    reference_label: str = "the reference dictionary",
    threshold: float = 0.5,
    bins: int = 50,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """Two panels. Left: histogram of all MCS values of the learned dictionary (counts), the
    random baseline (seeds x features, counts per seed averaged, scaled to the learned
    dictionary's size) and the analytic density scaled to counts. Right: the low part
    (MCS < threshold) as densities over its own range, where the post compares learned and
    random, with the analytic density conditioned on MCS < threshold.

    ``k_dim`` and ``m_draws`` are the space's dimension and the reference dictionary's size."""
    mcs = _finite(mcs, "mcs")
    random_mcs = np.atleast_2d(_finite(random_mcs, "random_mcs"))
    if mcs.size == 0 or random_mcs.size == 0:
        raise InputError("plot_mcs_histogram", "mcs", "empty sample", "pass MCS values to plot")
    n, n_seeds = mcs.size, random_mcs.shape[0]
    fig, (full, low) = new_figure(style, ncols=2)

    lo = min(float(mcs.min()), float(random_mcs.min()),
             float(analytic_mcs_quantiles(1e-4, k_dim, m_draws)), 0.0)
    edges = np.linspace(lo, 1.0, bins + 1)
    width = edges[1] - edges[0]
    full.hist(mcs, bins=edges, color="C0", alpha=0.75, label=f"{label} ({n:,} features)")
    per_seed = np.mean([np.histogram(r, bins=edges)[0] for r in random_mcs], axis=0)
    full.stairs(per_seed * n / random_mcs.shape[1], edges, color="C1", linewidth=1.5,
                label=f"random dictionaries (mean of {n_seeds} seed{'s' * (n_seeds > 1)})")
    grid = np.linspace(lo, 1.0, _CURVE_POINTS)
    full.plot(grid, analytic_mcs_pdf(grid, k_dim, m_draws) * n * width, color="black",
              linewidth=1, label=f"analytic (K = {k_dim:,}, M = {m_draws:,})")
    full.axvline(threshold, color="grey", linestyle=":", label=f"threshold {threshold:g}")
    full.set_yscale("symlog", linthresh=1.0)
    full.set_xlabel(f"MCS against {reference_label}")
    full.set_ylabel(f"features per bin (bin width {width:.3g}; symlog scale)")
    split = mcs_split(mcs, threshold)
    full.set_title(f"All features: {split['share_high']:.0%} have MCS >= {threshold:g}")

    low_learned = mcs[mcs < threshold]
    low_random = random_mcs[random_mcs < threshold]
    if low_random.size:
        top = threshold if low_learned.size == 0 else max(float(low_learned.max()), float(low_random.max()))
        bottom = min(float(low_random.min()), float(low_learned.min()) if low_learned.size else np.inf)
        top = max(top, bottom + 1e-3)  # one distinct value still needs a bin of some width
        low_edges = np.linspace(bottom, top, bins + 1)
        if low_learned.size:
            low.hist(low_learned, bins=low_edges, density=True, color="C0", alpha=0.75,
                     label=f"{label}, MCS < {threshold:g} ({low_learned.size:,})")
        low.hist(low_random, bins=low_edges, density=True, histtype="step", color="C1",
                 linewidth=1.5, label=f"random, MCS < {threshold:g}")
        low_grid = np.linspace(bottom, top, _CURVE_POINTS)
        mass = float(analytic_mcs_cdf(threshold, k_dim, m_draws))
        if mass > 0:
            low.plot(low_grid, analytic_mcs_pdf(low_grid, k_dim, m_draws) / mass, color="black",
                     linewidth=1, label="analytic, given MCS < threshold")
    else:
        low.text(0.5, 0.5, "no random MCS below the threshold", transform=low.transAxes,
                 ha="center", va="center")
    low.set_xlabel(f"MCS against {reference_label} (low part only)")
    low.set_ylabel("density")
    low.set_title(f"Low-MCS part: {split['n_low']:,} features vs random directions")
    for ax in (full, low):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Maximum cosine similarity of {label} against {reference_label}")
    caption = (
        "MCS: each feature's largest cosine similarity between its decoder direction and any "
        "decoder direction of the reference. Random: Gaussian dictionaries of the same shapes. "
        "Analytic: the max of M cosines with independent uniform directions in K dimensions, "
        "CDF F(t)^M with (t + 1)/2 ~ Beta((K - 1)/2, (K - 1)/2) (the post's footnote; it treats "
        "features as independent although they share the reference)."
    )
    return save_figure(fig, out, caption, note, style)


def plot_mcs_ladder(
    ladder: pl.DataFrame,
    out: str | Path,
    *,
    reference_label: str = "the reference dictionary",
    threshold: float = 0.5,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """Two panels by dictionary width (``ladder_table``'s output): the number of high- and
    low-MCS features (grouped bars) and their shares (stacked bars). Several seeds of a width
    are averaged, with their range as error bars."""
    require_columns(ladder, ("width", "n_high", "n_low", "share_high"), "MCS ladder")
    if ladder.height == 0:
        raise InputError("MCS ladder", "width", "no rows", "pass the ladder_table of some SAEs")
    by_width = (ladder.group_by("width")
                .agg(pl.col("n_high", "n_low", "share_high").mean().name.suffix("_mean"),
                     pl.col("n_high", "n_low").min().name.suffix("_min"),
                     pl.col("n_high", "n_low").max().name.suffix("_max"),
                     pl.len().alias("n_seeds"))
                .sort("width"))
    x = np.arange(by_width.height)
    labels = [f"{w:,}" for w in by_width["width"].to_list()]
    fig, (counts, shares) = new_figure(style, ncols=2)
    bar = 0.4
    for offset, column, colour, name in ((-bar / 2, "n_high", "C2", f"high (MCS >= {threshold:g})"),
                                         (bar / 2, "n_low", "C3", f"low (MCS < {threshold:g})")):
        mean = by_width[f"{column}_mean"].to_numpy()
        err = np.stack([mean - by_width[f"{column}_min"].to_numpy(),
                        by_width[f"{column}_max"].to_numpy() - mean])
        counts.bar(x + offset, mean, bar, color=colour, label=name,
                   yerr=err if (by_width["n_seeds"] > 1).any() else None, capsize=3)
    share_high = by_width["share_high_mean"].to_numpy()
    shares.bar(x, share_high, 0.6, color="C2", label=f"high (MCS >= {threshold:g})")
    shares.bar(x, 1 - share_high, 0.6, bottom=share_high, color="C3", label=f"low (MCS < {threshold:g})")
    for i, s in enumerate(share_high):
        shares.text(i, s / 2, f"{s:.0%}", ha="center", va="center", fontsize="small", color="white")
    counts.set_ylabel("features")
    counts.set_title("Number of high- and low-MCS features")
    shares.set_ylabel("share of the dictionary's features")
    shares.set_ylim(0, 1)
    shares.set_title("Proportion of high- and low-MCS features")
    for ax in (counts, shares):
        ax.set_xticks(x, labels=labels)
        ax.set_xlabel("dictionary width (features)")
        ax.legend(fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"High- and low-MCS features by dictionary width, against {reference_label}")
    seeds = int(by_width["n_seeds"].max())
    caption = (
        f"Each dictionary's features scored by MCS against {reference_label}; high means "
        f"MCS >= {threshold:g} (the post's cutoff). "
        + (f"Bars average up to {seeds} seeds per width; error bars span min to max."
           if seeds > 1 else "One dictionary per width.")
    )
    return save_figure(fig, out, caption, note, style)


def plot_mcs_scatter(
    mcs_b: Float[np.ndarray, " m"],
    mcs_c: Float[np.ndarray, " m"],
    out: str | Path,
    *,
    label: str = "the dictionary",
    label_b: str = "dictionary B",
    label_c: str = "dictionary C",
    significant: Bool[np.ndarray, " m"] | None = None,
    threshold: float = 0.5,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """One point per feature: its MCS against B (x) and against C (y), with the Pearson and
    Spearman correlations; ``significant`` features (bilingual) drawn on top in another colour."""
    from scipy import stats

    mcs_b, mcs_c = _finite(mcs_b, "mcs_b"), _finite(mcs_c, "mcs_c")
    if mcs_b.shape != mcs_c.shape or mcs_b.ndim != 1:
        raise InputError("plot_mcs_scatter", "mcs_c", f"shape {mcs_c.shape} != mcs_b {mcs_b.shape}",
                         "score the same dictionary's features against both references")
    if significant is not None:
        significant = np.asarray(significant, dtype=bool)
        if significant.shape != mcs_b.shape:
            raise InputError("plot_mcs_scatter", "significant", f"shape {significant.shape}",
                             "pass one flag per feature")
    if mcs_b.size == 0:
        raise InputError("plot_mcs_scatter", "mcs_b", "empty", "pass MCS values to plot")
    # One square panel: a wide canvas would only add blank margins beside it.
    style = replace(style, width=min(style.width, style.height * 1.2))
    fig, (ax,) = new_figure(style)
    size = float(np.clip(4000 / mcs_b.size, 1, 20))
    rest = np.ones(mcs_b.size, dtype=bool) if significant is None else ~significant
    ax.scatter(mcs_b[rest], mcs_c[rest], s=size, alpha=0.4, color="C0", linewidths=0,
               label=f"features ({int(rest.sum()):,})" if significant is None
               else f"other features ({int(rest.sum()):,})")
    if significant is not None and significant.any():
        ax.scatter(mcs_b[significant], mcs_c[significant], s=max(size, 8), alpha=0.9, color="C3",
                   linewidths=0, label=f"significant bilingual ({int(significant.sum()):,})")
    lo = min(float(mcs_b.min()), float(mcs_c.min()), 0.0)
    ax.plot([lo, 1], [lo, 1], color="grey", linewidth=0.8, label="y = x")
    ax.axvline(threshold, color="grey", linestyle=":", linewidth=0.8)
    ax.axhline(threshold, color="grey", linestyle=":", linewidth=0.8, label=f"threshold {threshold:g}")
    ax.set_xlim(lo - 0.02, 1.02)
    ax.set_ylim(lo - 0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"MCS against {label_b}")
    ax.set_ylabel(f"MCS against {label_c}")
    if mcs_b.size > 1 and np.ptp(mcs_b) > 0 and np.ptp(mcs_c) > 0:
        pearson = stats.pearsonr(mcs_b, mcs_c).statistic
        spearman = stats.spearmanr(mcs_b, mcs_c).statistic
        corr = f"Pearson r = {pearson:.2f}, Spearman rho = {spearman:.2f}"
    else:
        corr = "correlation undefined (constant MCS)"
    ax.set_title(f"MCS of {label}'s features against two dictionaries\n{corr}", fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    caption = (
        "Each point is a feature; x and y are its maximum cosine similarity with any decoder "
        f"direction of {label_b} and of {label_c}. Features found by both sit near (1, 1); "
        "random-like ones cluster at the random-baseline MCS of each."
    )
    return save_figure(fig, out, caption, note, style)


def _finite(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise InputError("MCS figure", name, "contains NaN or infinite values",
                         "drop features without an MCS")
    return x
