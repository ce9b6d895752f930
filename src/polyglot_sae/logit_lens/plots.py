"""Figures of the logit-lens analysis (``logit_lens``), in the house style of ``figures``: a title,
labelled axes, a legend and a caption on every figure, drawn off-screen and written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from jaxtyping import Bool, Float

from polyglot_sae.errors import InputError
from polyglot_sae.logit_lens.core import CLASSES, ClassConfig
from polyglot_sae.logit_lens.join import NEITHER, SEVERAL, JoinConfig, promotes_labels
from polyglot_sae.figures import DEFAULT_STYLE, FigureStyle, new_figure, require_columns, save_figure

_CLASS_COLOURS = {"prediction": "C0", "suppression": "C3", "partition": "C2", "other": "0.6",
                  "flat": "black"}


def plot_skew_kurtosis(stats: pl.DataFrame, out: str | Path, *,
                       class_config: ClassConfig = ClassConfig(), note: str = "",
                       style: FigureStyle = DEFAULT_STYLE) -> Path:
    """The post's feature map: skewness (x) against kurtosis (y) of every feature's logit
    weights, coloured by class, with the class thresholds drawn in. y is Pearson's kurtosis
    (excess + 3, which is >= 1 for any distribution) on a log scale, so heavy tails spread out
    and near-normal features sit near 3."""
    require_columns(stats, ("skewness", "kurtosis", "class"), "logit-lens stats")
    shown = stats.filter(pl.col("kurtosis").is_not_nan() & pl.col("kurtosis").is_not_null())
    if shown.height == 0:
        raise InputError("logit-lens stats", "kurtosis", "no feature with finite moments",
                         "check that the SAE's decoder rows are not all zero")
    fig, (ax,) = new_figure(style)
    counts = stats.group_by("class").len()
    count = dict(zip(counts["class"].cast(pl.String).to_list(), counts["len"].to_list()))
    for cls in CLASSES:
        part = shown.filter(pl.col("class").cast(pl.String) == cls)
        if part.height:
            ax.scatter(part["skewness"].to_numpy(), part["kurtosis"].to_numpy() + 3.0, s=8,
                       alpha=0.6, color=_CLASS_COLOURS[cls], label=f"{cls} ({count.get(cls, 0):,})")
    ax.set_yscale("log")
    k = class_config.kurtosis_min + 3.0
    ax.axhline(k, color="black", linestyle="--", linewidth=0.8,
               label=f"heavy tail: excess kurtosis >= {class_config.kurtosis_min:g}")
    for x in (class_config.skew_min, -class_config.skew_min):
        ax.axvline(x, color="black", linestyle=":", linewidth=0.8)
    ax.axhline(3.0, color="0.4", linewidth=0.6, label="normal distribution (kurtosis 3)")
    ax.set_xlabel("skewness of the logit weights (> 0: a few tokens strongly promoted)")
    ax.set_ylabel("kurtosis (Pearson: excess + 3; log scale)")
    ax.set_title(f"Logit weight distributions of {stats.height:,} SAE features")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    caption = (
        "Each point is a feature: moments of W_U^T (g * W_dec[i]) over the vocabulary (g: the "
        "final norm's weight). Classes: prediction = heavy tail and skew >= "
        f"{class_config.skew_min:g}, suppression = heavy tail and skew <= -{class_config.skew_min:g} "
        f"(dotted lines), partition = bimodality coefficient > {class_config.bimodality_min:.3g}, "
        "other = the rest; features with constant weights (flat) are not drawn."
    )
    return save_figure(fig, out, caption, note, style)


def plot_logit_histogram(values: Float[np.ndarray, " d_vocab"], in_set: Bool[np.ndarray, " d_vocab"],
                         out: str | Path, *, feature_id: int, set_name: str,
                         universe: Bool[np.ndarray, " d_vocab"] | None = None,
                         auc: float | None = None, q_value: float | None = None, bins: int = 80,
                         note: str = "", style: FigureStyle = DEFAULT_STYLE) -> Path:
    """The post's enrichment figure: one feature's logit weights, the set's tokens against the
    rest, overlaid and density-normalised (each histogram integrates to 1, so a small set is
    visible next to 260k other tokens)."""
    values = np.asarray(values, dtype=np.float64)
    in_set = np.asarray(in_set, dtype=bool)
    universe = np.ones(values.size, dtype=bool) if universe is None else np.asarray(universe, bool)
    if in_set.shape != values.shape or universe.shape != values.shape:
        raise InputError("plot_logit_histogram", "in_set", f"masks {in_set.shape} / "
                         f"{universe.shape} do not match the weights {values.shape}",
                         "pass masks over the same vocabulary")
    inside, rest = values[in_set & universe], values[~in_set & universe]
    if inside.size == 0 or rest.size == 0:
        raise InputError("plot_logit_histogram", "in_set", f"{inside.size} set tokens and "
                         f"{rest.size} others", "pass a set that is neither empty nor everything")
    edges = np.histogram_bin_edges(np.concatenate([inside, rest]), bins=bins)
    fig, (ax,) = new_figure(style)
    ax.hist(rest, bins=edges, density=True, alpha=0.5, color="0.5",
            label=f"other tokens ({rest.size:,})")
    ax.hist(inside, bins=edges, density=True, alpha=0.6, color="C1",
            label=f"{set_name} ({inside.size:,})")
    ax.set_xlabel(f"logit weight of feature {feature_id} (direct effect on the token's logit)")
    ax.set_ylabel("density (each group integrates to 1)")
    test = []
    if auc is not None:
        test.append(f"AUC {auc:.3f}")
    if q_value is not None:
        test.append(f"q {q_value:.2g}")
    ax.set_title(f"Feature {feature_id}: logit weights of {set_name} vs the other tokens"
                 + (f" ({', '.join(test)})" if test else ""))
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    caption = (
        "Logit weights W_U^T (g * W_dec[i]) of every token in the universe (special and unused "
        "tokens left out), split by membership of the set. AUC: chance that a set token outranks "
        "another token; q: the Benjamini-Hochberg q the caller passes (promotion)."
    )
    return save_figure(fig, out, caption, note, style)


def plot_language_promotion(crosstab: pl.DataFrame, out: str | Path, langs: Sequence[str], *,
                            join_config: JoinConfig = JoinConfig(), note: str = "",
                            style: FigureStyle = DEFAULT_STYLE) -> Path:
    """Share of the significant-bilingual and of the other alive features whose logit weights
    promote one language's set, several or none (``join_bilingual``'s crosstab)."""
    labels = promotes_labels(langs)
    require_columns(crosstab, ("group", "promotes", "n_features", "share"), "language-promotion crosstab")
    fig, (ax,) = new_figure(style)
    width = 0.38
    x = np.arange(len(labels))
    for offset, (group, colour) in zip((-width / 2, width / 2), (("bilingual", "C0"), ("other", "0.6"))):
        part = crosstab.filter(pl.col("group") == group)
        share = {str(p): s for p, s in zip(part["promotes"].to_list(), part["share"].to_list())}
        n = {str(p): c for p, c in zip(part["promotes"].to_list(), part["n_features"].to_list())}
        total = sum(n.values())
        heights = [100 * (share.get(p) or 0.0) for p in labels]
        bars = ax.bar(x + offset, heights, width, color=colour,
                      label=f"{group} features ({total:,})")
        for bar, p in zip(bars, labels):
            ax.annotate(f"{n.get(p, 0):,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize="small")
    names = {SEVERAL: "two or more sets" if len(langs) > 2 else "both sets", NEITHER: "neither"}
    ax.set_xticks(x, labels=[names.get(p, f"{p} set only") for p in labels])
    ax.set_xlabel("which language's tokens the feature's logit weights promote")
    ax.set_ylabel("% of the group's alive features")
    ax.set_title("Do bilingual features promote tokens of one language, several or none?")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    rule = (f"rank < {join_config.bilingual_top_k}" if join_config.bilingual_top_k is not None
            else f"scores q_value < {join_config.bilingual_alpha:g}")
    null = ("the set's AUC compared with random residual directions' AUCs"
            if join_config.null == "direction" else "Mann-Whitney test against random token subsets")
    sets = ", ".join(f"{join_config.set_prefix}{lang}" for lang in langs)
    caption = (
        f"Bilingual: alive features with {rule}; other: the remaining alive features. A feature "
        f"promotes a language set when its one-sided q < {join_config.alpha:g} and AUC > "
        f"{join_config.min_auc:g} ({null}; sets {sets}: tokens "
        "seen mostly in that language of the corpus). Bar labels: feature counts."
    )
    return save_figure(fig, out, caption, note, style)
