"""The paired method's figure: each supported feature's cross-language correlation against its
paraphrase ceiling, coloured by class, the top features labelled with their words."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.figures import FigureStyle, new_figure, save_figure
from .words import words_by_feature

# Colour per class; the order is the legend's.
CLASS_COLOURS = {"concept": "tab:green", "context": "tab:brown", "shared_string": "tab:orange",
                 "length": "tab:purple", "weak": "0.6", "low_support": "0.85"}
# One colour per language for its language-specific features, in the order of langs.
_SPECIFIC = ("tab:blue", "tab:red", "tab:cyan", "tab:pink", "tab:olive")


def plot_ceiling(scores: pl.DataFrame, words: pl.DataFrame, out: str | Path,
                 langs: Sequence[str], *, top_k: int = 25, label_k: int = 8, note: str = "",
                 style: FigureStyle = FigureStyle(width=7.5, height=7.0)) -> Path:
    """rho (x) against rho_para (y) with the diagonal; without a paraphrase, rho against its
    lower bound rho_lo (the y label says which)."""
    shown = scores.filter(pl.col("rho").is_not_null() & ~pl.col("dead"))
    para = shown["rho_para"].drop_nulls().len() > 0
    y_col, y_label = ("rho_para", "rho_para: the same statistic between two versions of "
                      "one language") if para else ("rho_lo", "rho_lo (bootstrap lower bound)")
    fig, (ax,) = new_figure(style)
    specific = {f"lang_specific:{lang}": _SPECIFIC[i % len(_SPECIFIC)]
                for i, lang in enumerate(langs)}
    for cls in [*CLASS_COLOURS, *specific]:
        part = shown.filter(pl.col("class") == cls)
        if part.height == 0:
            continue
        ax.scatter(part["rho"].to_numpy(), part[y_col].fill_null(np.nan).to_numpy(),
                   s=6 if cls in ("weak", "low_support") else 12,
                   color=CLASS_COLOURS.get(cls) or specific[cls], alpha=0.8, linewidths=0,
                   label=f"{cls} ({part.height})")
    ax.plot([0, 1], [0, 1], color="0.3", lw=0.8, ls="--", label="rho = ceiling")
    by_feature = words_by_feature(words, langs)
    labelled = shown.filter(pl.col("rank") < min(top_k, label_k)).sort("rank")
    for i, r in enumerate(labelled.iter_rows(named=True)):
        if r[y_col] is None:
            continue
        w = by_feature.get(r["feature_id"], {})
        text = "/".join((w.get(lang) or ["?"])[0] for lang in langs)
        # The top features crowd one corner: labels go down a column at the left of it, each
        # with a thin line to its point.
        ax.annotate(text, (r["rho"], r[y_col]), xytext=(0.52, 0.4 - 0.045 * i), fontsize=7,
                    textcoords="data", arrowprops={"arrowstyle": "-", "lw": 0.4,
                                                   "color": "0.5"})
    _frame(ax, f"rho: correlation across languages ({' vs '.join(langs)}) of the per-pair maxima",
           y_label, "lower right", "Bilingual by meaning: correlation against the paraphrase "
           "ceiling")
    caption = ("Each point is a feature firing in both languages (dead ones left out). A concept feature shared "
               "by the languages lies near the diagonal (as correlated across languages as "
               "across two versions of one language); labels: the top features' words.")
    return save_figure(fig, out, caption, note, style)


def plot_word_level(scores: pl.DataFrame, out: str | Path, langs: Sequence[str], *,
                    note: str = "", style: FigureStyle = FigureStyle(width=12.0, height=6.0)
                    ) -> Path:
    """Left: verse-level rho (x) against word-level r_word (y); right: r_word against
    align_lift, the statistic that separates concept from context; coloured by class."""
    shown = scores.filter(pl.col("rho").is_not_null() & pl.col("r_word").is_not_null()
                          & ~pl.col("dead"))
    fig, (left, right) = new_figure(style, ncols=2)
    for cls, colour in CLASS_COLOURS.items():
        part = shown.filter(pl.col("class") == cls)
        if part.height:
            size = 6 if cls in ("weak", "low_support") else 12
            for ax, x, y in ((left, "rho", "r_word"), (right, "align_lift", "r_word")):
                ax.scatter(part[x].fill_null(np.nan).to_numpy(), part[y].to_numpy(), s=size,
                           color=colour, alpha=0.8, linewidths=0,
                           label=f"{cls} ({part.height})")
    left.plot([0, 1], [0, 1], color="0.3", lw=0.8, ls="--", label="r_word = rho")
    _frame(left, f"rho: verse level ({' vs '.join(langs)}, per-pair maxima)",
           "r_word: word level (aligned word pairs, zeros included)", "upper left",
           "Same verses, same words?")
    _frame(right, "align_lift: fires on the aligned word more than on the verse's others",
           "r_word", "upper left", "What separates concept from context")
    right.set_xlim(-0.15, 1.02)
    caption = ("Each point is a feature with both statistics (dead ones left out). concept: "
               "credible agreement at both levels (r_word_lo, align_lift); context: the verses "
               "agree but the feature does not fire on the aligned word more than on the rest "
               "of the verse (dense, function-word, topic and position features).")
    return save_figure(fig, out, caption, note, style)


def _frame(ax, xlabel: str, ylabel: str, legend_at: str, title: str) -> None:
    """Labels, the correlation square [-0.05, 1.02]² and the legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.05, 1.02)
    ax.set_ylim(-0.05, 1.02)
    ax.legend(fontsize=7, loc=legend_at)
    ax.set_title(title)
