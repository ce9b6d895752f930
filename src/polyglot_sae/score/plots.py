"""Figures that can be read without the code: each has a title, labelled axes, a legend and, at
the bottom, a caption saying how it was computed (with the settings the caller passes in
``note``).

Figures are drawn on a private Agg canvas (no pyplot), so importing this module does not change
the backend of a notebook or script that uses it, and each PNG is written to a temporary name
beside the target and renamed, so a killed job never leaves a truncated image behind.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from polyglot_sae.atomic_io import atomic_file
from polyglot_sae.errors import InputError

# The blog's thresholds for its first figure: the mean and these quantiles of positive values.
SHARE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class FigureStyle:
    """Size and resolution shared by every figure."""

    width: float = 11.0  # inches; two panels side by side stay legible at this width
    height: float = 5.5  # inches, caption included
    dpi: int = 120  # ~1300 x 660 px: sharp in the Snakemake report without large files
    caption_size: float = 8.5  # points; small, as a caption, but readable at 100% zoom


DEFAULT_STYLE = FigureStyle()


def plot_activation_share(
    maxacts: pl.DataFrame,
    n_pairs: int,
    langs: Sequence[str],
    out: str | Path,
    *,
    d_sae: int | None = None,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """The seed's first figure, one panel per language: for each feature, the share of pairs on
    which its max activation exceeds a threshold, features sorted by that share (log x), one
    line per threshold (mean and 5/25/50/75/95% quantiles of the language's positive maxima).

    With ``d_sae`` the features that never exceed a threshold are drawn as the zero tail the
    blog shows; without it they are left out.
    """
    _require(maxacts, ("lang", "feature_id", "value"), "max-activation table")
    langs = list(langs)
    if n_pairs < 1:
        raise InputError("plot_activation_share", "n_pairs", f"{n_pairs} < 1",
                         "pass the number of pairs the table was built from")
    fig, axes = _figure(style, ncols=len(langs), sharey=True)
    for ax, lang in zip(axes, langs):
        part = maxacts.filter(pl.col("lang") == lang)
        if part.height == 0:
            raise InputError("max-activation table", "lang", f"no rows for language {lang!r}",
                             f"pass languages present in the table ({sorted(maxacts['lang'].unique())})")
        values = part["value"].cast(pl.Float64).to_numpy()
        features = part["feature_id"].cast(pl.Int64).to_numpy()
        positive = values > 0
        values, features = values[positive], features[positive]
        n_features = d_sae if d_sae is not None else int(features.max()) + 1
        thresholds = [("mean", values.mean())] + [
            (f"q{round(q * 100):02d}", v) for q, v in zip(SHARE_QUANTILES, np.quantile(values, SHARE_QUANTILES))
        ]
        for name, threshold in thresholds:
            count = np.bincount(features[values > threshold], minlength=n_features)
            share = np.sort(count)[::-1] / n_pairs * 100
            if d_sae is None:
                share = share[share > 0]
            ax.plot(np.arange(1, share.size + 1), share, label=f"{name} = {threshold:.3g}")
        ax.set_xscale("log")
        ax.set_title(f"{lang}: {part.height:,} positive (pair, feature) maxima")
        ax.set_xlabel("features, ordered by share (log scale)")
        ax.legend(title="threshold", fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("% of pairs where the feature's max > threshold")
    fig.suptitle("Share of sentence pairs on which each SAE feature fires, per language")
    caption = (
        f"Computed from the per-(pair, language) max-activation table ({n_pairs:,} pairs, BOS "
        "excluded). A feature counts on a pair when its max over the sentence's tokens exceeds "
        "the threshold; thresholds are the mean and quantiles of that language's positive "
        "maxima (the blog took them over all positive token activations, so its thresholds are lower)."
    )
    return _save(fig, out, caption, note, style)


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
    _require(scores, ("feature_id", "bi_score", "dead"), "scores")
    alive = scores.filter(~pl.col("dead") & pl.col("bi_score").is_not_null()).sort("bi_score", "feature_id")
    if alive.height == 0:
        raise InputError("scores", "dead", "no alive feature to plot",
                         "score a table where some feature fires in every language")
    y = alive["bi_score"].to_numpy()
    fig, (ax,) = _figure(style)
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
    return _save(fig, out, caption, note, style)


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
    _require(scores, ("p_value", "q_value", "dead"), "scores")
    alive = scores.filter(~pl.col("dead") & pl.col("p_value").is_not_null())
    if alive.height == 0:
        raise InputError("scores", "p_value", "no alive feature has a p-value",
                         "score with the permutation null first")
    p = alive["p_value"].cast(pl.Float64).to_numpy()
    n_sig = int((alive["q_value"].cast(pl.Float64).fill_null(1.0) < alpha).sum())
    fig, (ax,) = _figure(style)
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
    return _save(fig, out, caption, note, style)


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
    _require(sweep, ("beta_rank", "beta", "jaccard_topk", "kendall_tau"), "beta sweep")
    sweep = sweep.sort("beta_rank")
    x = sweep["beta_rank"].cast(pl.Float64).to_numpy()
    fig, (top, bottom) = _figure(style, nrows=2, sharex=True, height_ratios=(2, 1))
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
    _log_x_if_wide(bottom, x)
    _ticks_at(bottom, x)
    for ax in (top, bottom):
        ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
    top.set_title("Sensitivity of the bilingual ranking to beta")
    caption = (
        "Each beta rank r sets beta = -(JSD_(r) - JSD_min) / (idaf_max - idaf_min); every "
        f"ranking is compared with the reference one: Jaccard overlap of the {k} lists and "
        "Kendall's tau of the bi_score order over alive features (1 = unchanged)."
    )
    return _save(fig, out, caption, note, style)


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
    _require(ablation, columns, "dataset-size ablation")
    ablation = ablation.sort("n_pairs")
    x = ablation["n_pairs"].cast(pl.Float64).to_numpy()
    if (x <= 0).any():
        raise InputError("dataset-size ablation", "n_pairs", "values must be > 0 for a log axis",
                         "drop the empty subsets")
    k = f"top-{top_k}" if top_k else "top-k"
    fig, axes = _figure(style, ncols=2)
    panels = (("n_found", found),
              ("topk_overlap", f"Jaccard overlap of the {k} with the full data's"))
    for ax, (column, label) in zip(axes, panels):
        mid, lo, hi = (ablation[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
                       for c in (column, f"{column}_lo", f"{column}_hi"))
        ax.fill_between(x, lo, hi, color="C0", alpha=0.25, label="interval over subsets")
        ax.plot(x, mid, "o-", color="C0", label="estimate on the subset")
        ax.set_xscale("log")
        _ticks_at(ax, x)
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
    return _save(fig, out, caption, note, style)


def _require(table: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(what, ", ".join(missing), f"missing column(s) (has {table.columns})",
                         f"pass a table with columns {list(columns)}")


def _figure(style: FigureStyle, *, nrows: int = 1, ncols: int = 1, sharex: bool = False,
            sharey: bool = False, height_ratios: Sequence[float] | None = None):
    fig = Figure(figsize=(style.width, style.height), dpi=style.dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, list(axes.ravel())


def _log_x_if_wide(ax, x: np.ndarray) -> None:
    # Beta ranks are usually spaced geometrically (10, 30, 100, 300, ...).
    if x.size and x.min() > 0 and x.max() / x.min() >= 20:
        ax.set_xscale("log")
    elif x.size and x.min() == 0 and x.max() >= 20:
        ax.set_xscale("symlog", linthresh=1.0)
        # symlog's autoscale would show an empty negative half.
        ax.set_xlim(-0.5, x.max() * 1.3)


def _ticks_at(ax, x: np.ndarray) -> None:
    """Label the measured x values themselves: log axes otherwise print crowded 3x10^2 labels."""
    if 0 < x.size <= 12:
        ax.set_xticks(x, labels=[f"{v:,.0f}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: Figure, out: str | Path, caption: str, note: str, style: FigureStyle) -> Path:
    """Lay out with room for the wrapped caption at the bottom, then write the PNG atomically."""
    text = caption + (f" Settings: {note}" if note else "")
    # About 0.55 em per character: wrap to the figure's width at the caption's size.
    chars = int(style.width * 72 / (style.caption_size * 0.55))
    lines = textwrap.wrap(text, width=chars)
    height = (len(lines) * 1.35 * style.caption_size + 10) / (style.height * 72)
    fig.text(0.01, 0.01, "\n".join(lines), ha="left", va="bottom",
             fontsize=style.caption_size, color="0.25")
    fig.tight_layout(rect=(0, height, 1, 1))
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png")
    return Path(out)
