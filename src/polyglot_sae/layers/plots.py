"""The layer profile's figure: hooks on the x axis in forward order, four panels sharing it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.figures import FigureStyle, new_figure, require_columns, save_figure

_CLASSES = {"concept": "tab:green", "context": "tab:brown", "shared_string": "tab:orange",
            "length": "tab:purple",
            "low_support": "0.7", "dead": "0.3"}
_LANGS = ("tab:blue", "tab:red", "tab:cyan", "tab:pink", "tab:olive")


def _band(ax, x, table: pl.DataFrame, name: str, label: str, colour: str) -> None:
    if name not in table.columns:
        return
    mean = table[name].to_numpy()
    ax.plot(x, mean, marker="o", color=colour, label=label)
    ax.fill_between(x, table[f"{name}_lo"].to_numpy(), table[f"{name}_hi"].to_numpy(),
                    color=colour, alpha=0.2, linewidth=0)


def plot_layers(table: pl.DataFrame, out: str | Path, langs: Sequence[str], note: str = "",
                style: FigureStyle = FigureStyle(width=8.0, height=10.0)) -> Path:
    """(1) SAE quality, (2) paired class shares and median rho, (3) active-set overlap of
    translations against paraphrases and random pairs, (4) logit-lens language promotion."""
    require_columns(table, ["hook", "fve", "ce_delta", "median_rho", "iou_random"],
                    "the layer profile")
    x = np.arange(table.height)
    fig, axes = new_figure(style, nrows=4, sharex=True)
    quality, classes, overlap, lens = axes
    quality.plot(x, table["fve"].to_numpy(), marker="o", label="FVE")
    quality.plot(x, table["share_dead"].to_numpy(), marker="s", label="dead share")
    twin = quality.twinx()
    twin.plot(x, table["ce_delta"].to_numpy(), marker="^", color="tab:red",
              label="LM loss increase (nats)")
    twin.set_ylabel("loss increase (nats)")
    quality.set_ylabel("share")
    quality.legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="upper right")
    quality.set_title("SAE quality per hook")
    for cls, colour in _CLASSES.items():
        classes.plot(x, table[f"share_{cls}"].to_numpy(), marker="o", color=colour, label=cls)
    for i, lang in enumerate(langs):
        classes.plot(x, table[f"share_lang_specific_{lang}"].to_numpy(), marker="v",
                     color=_LANGS[i % len(_LANGS)], label=f"{lang}-specific")
    classes.plot(x, table["median_rho"].to_numpy(), color="black", ls="--",
                 label="median rho (supported)")
    classes.set_ylabel("share of features")
    classes.legend(fontsize=7, ncol=3)
    classes.set_title("Paired classes: concept-bilingual against language-specific")
    for i, a in enumerate(langs):
        for b in langs[i + 1:]:
            _band(overlap, x, table, f"iou_{a}_{b}", f"translation {a}-{b}", "tab:green")
    _band(overlap, x, table, "iou_para", f"paraphrase ({langs[0]})", "tab:blue")
    _band(overlap, x, table, "iou_random", "random pairs", "0.5")
    overlap.set_ylabel("IoU of active features")
    overlap.legend(fontsize=7)
    overlap.set_title("Active-set overlap per sentence pair (95% bootstrap band)")
    for i, lang in enumerate(langs):
        if f"promotes_{lang}" in table.columns:
            lens.plot(x, table[f"promotes_{lang}"].to_numpy(), marker="o",
                      color=_LANGS[i % len(_LANGS)], label=f"promotes {lang} tokens")
    lens.set_ylabel("share of alive features")
    lens.legend(fontsize=7)
    lens.set_title("Logit lens: features whose direction promotes a language's tokens")
    lens.set_xticks(x, [h.replace(".hook_", "\n") for h in table["hook"].to_list()], fontsize=7)
    lens.set_xlabel("hook (forward order)")
    return save_figure(fig, out, "Layer profile: where features become language-agnostic",
                       note, style)
