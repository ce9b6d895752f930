"""The BI methods' figures: the sorted score curve, the p-value histogram and the beta sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.errors import InputError
from polyglot_sae.figures import (DEFAULT_STYLE, FigureStyle, log_x_if_wide, new_figure,
                                  require_columns, save_figure, ticks_at)


def plot_bi_curve(
    scores: pl.DataFrame,
    out: str | Path,
    method: str,
    *,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """The seed's second figure: the alive features' bi_score sorted ascending (log y when all
    are positive, symlog otherwise), the best few feature ids written on the plot."""
    require_columns(scores, ("feature_id", "bi_score", "dead"), "scores")
    alive = scores.filter(~pl.col("dead") & pl.col("bi_score").is_not_null()).sort("bi_score", "feature_id")
    if alive.height == 0:
        raise InputError("scores", "dead", "no alive feature to plot",
                         "score a table where some feature fires in every language")
    y = alive["bi_score"].to_numpy()
    fig, (ax,) = new_figure(style)
    ax.plot(np.arange(y.size), y, color="C0", label=f"alive features ({y.size:,})")
    if (y > 0).all():
        ax.set_yscale("log")
        scale = "log"
    else:
        nonzero = np.abs(y[y != 0])
        ax.set_yscale("symlog", linthresh=float(np.quantile(nonzero, 0.1)) if nonzero.size else 1.0)
        scale = "symlog (linear near 0)"
    best = ", ".join(str(i) for i in alive["feature_id"].head(8).to_list())
    ax.text(0.02, 0.97, f"lowest (most bilingual): {best}", transform=ax.transAxes,
            va="top", ha="left", fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    ax.set_xlabel("alive features, sorted by bi_score")
    ax.set_ylabel(f"bi_score ({scale} scale; lower = more bilingual)")
    ax.set_title(f"Bilingual interpretability score of the alive features (method {method})")
    ax.legend(loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    beta = scores["beta"].drop_nulls() if "beta" in scores.columns else pl.Series([])
    beta_text = f"beta = {beta[0]:.4g}" if beta.len() else "beta not recorded"
    caption = (
        f"bi_score = divergence + beta * idaf (method {method}), {beta_text}; "
        f"{scores.height - alive.height:,} of {scores.height:,} features left out as dead "
        "(silent in some language)."
    )
    return save_figure(fig, out, caption, note, style)


def plot_pvalue_histogram(
    scores: pl.DataFrame,
    out: str | Path,
    *,
    alpha: float = 0.05,
    bins: int = 20,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """Histogram of the alive features' p-values with the flat count expected under the null,
    and the number of features with q < ``alpha`` in the title."""
    require_columns(scores, ("p_value", "q_value", "dead"), "scores")
    alive = scores.filter(~pl.col("dead") & pl.col("p_value").is_not_null())
    if alive.height == 0:
        raise InputError("scores", "p_value", "no alive feature has a p-value",
                         "score with the permutation null first")
    p = alive["p_value"].cast(pl.Float64).to_numpy()
    n_sig = int((alive["q_value"].cast(pl.Float64).fill_null(1.0) < alpha).sum())
    fig, (ax,) = new_figure(style)
    ax.hist(p, bins=bins, range=(0, 1), color="C0", edgecolor="white", label="alive features")
    ax.axhline(p.size / bins, color="black", linestyle="--",
               label=f"uniform: {p.size / bins:.1f} per bin (no feature bilingual)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("permutation p-value")
    ax.set_ylabel(f"features per bin (bin width {1 / bins:.2g})")
    ax.set_title(f"p-values of {p.size:,} alive features: {n_sig:,} with q < {alpha:g}")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    caption = (
        "p: share of permuted pairings (languages re-paired at random) whose divergence is at "
        "most the observed one; q: the scores table's q_value (Benjamini-Hochberg). A flat "
        "histogram means no signal; the excess near 0 is the bilingual features."
    )
    return save_figure(fig, out, caption, note, style)


def plot_beta_sweep(
    sweep: pl.DataFrame,
    out: str | Path,
    *,
    top_k: int | None = None,
    reference_beta_rank: int | None = None,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """How the ranking moves with beta: top-k Jaccard overlap and Kendall's tau against the
    reference ranking (upper panel) and beta itself (lower panel), both vs beta_rank."""
    require_columns(sweep, ("beta_rank", "beta", "jaccard_topk", "kendall_tau"), "beta sweep")
    sweep = sweep.sort("beta_rank")
    x = sweep["beta_rank"].cast(pl.Float64).to_numpy()
    fig, (top, bottom) = new_figure(style, nrows=2, sharex=True, height_ratios=(2, 1))
    k = f"top-{top_k}" if top_k else "top-k"
    top.plot(x, sweep["jaccard_topk"].to_numpy(), "o-", label=f"Jaccard overlap of the {k}")
    top.plot(x, sweep["kendall_tau"].to_numpy(), "s-", label="Kendall's tau, alive features")
    bottom.plot(x, sweep["beta"].to_numpy(), "o-", color="C2", label="beta")
    if reference_beta_rank is not None:
        for ax in (top, bottom):
            ax.axvline(reference_beta_rank, color="grey", linestyle=":",
                       label=f"reference (beta rank {reference_beta_rank})")
    low = min(0.0, float(np.nanmin(sweep.select("jaccard_topk", "kendall_tau").to_numpy())))
    top.set_ylim(low - 0.05, 1.05)
    top.set_ylabel("agreement with the reference")
    bottom.set_ylabel("beta")
    bottom.set_xlabel("beta rank (idaf may reorder features up to this JSD rank)")
    log_x_if_wide(bottom, x)
    ticks_at(bottom, x)
    for ax in (top, bottom):
        ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
    top.set_title("Sensitivity of the bilingual ranking to beta")
    caption = (
        "Each beta rank r sets beta = -(JSD_(r) - JSD_min) / (idaf_max - idaf_min); every "
        f"ranking is compared with the reference one: Jaccard overlap of the {k} lists and "
        "Kendall's tau of the bi_score order over alive features (1 = unchanged)."
    )
    return save_figure(fig, out, caption, note, style)
