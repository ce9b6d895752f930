"""The causal check's figures: each tested feature's ablation effect (KL) in one language
against the other with its interval and verdict, beside the controls; and the whole dictionary's
effects coloured by ``paired`` class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.figures import FigureStyle, new_figure, require_columns, save_figure

from .dictionary import class_medians, with_classes

# Floor under KL on the log axes (an ablation that moved nothing measurable).
_KL_MIN = 1e-6
_VERDICT_COLOURS = {"both": "tab:green", "one": "tab:blue", "neither": "tab:red"}
_CLASS_COLOURS = {"concept": "tab:green", "context": "tab:olive", "shared_string": "tab:purple",
                  "length": "tab:brown", "weak": "0.7"}


def plot_causal(table: pl.DataFrame, out: str | Path, langs: Sequence[str], *, note: str = "",
                style: FigureStyle = FigureStyle(width=7.5, height=7.0)) -> Path:
    """kl_{A} (x) against kl_{B} (y) for the first two languages on log axes, each tested
    feature with its 95% intervals, coloured by verdict; controls in grey."""
    a, b = list(langs)[:2]
    need = ["feature_id", "is_control", "verdict", f"kl_{a}", f"kl_{b}", f"kl_{a}_lo",
            f"kl_{a}_hi", f"kl_{b}_lo", f"kl_{b}_hi", f"q_{a}", f"q_{b}"]
    require_columns(table, need, "causal table")
    fig, (ax,) = new_figure(style)
    shown = table.filter(pl.col(f"kl_{a}").is_not_nan() & pl.col(f"kl_{b}").is_not_nan()
                         & (pl.col(f"kl_{a}") > 0) & (pl.col(f"kl_{b}") > 0))
    ctrl = shown.filter(pl.col("is_control"))
    if ctrl.height:
        ax.scatter(ctrl[f"kl_{a}"], ctrl[f"kl_{b}"], s=10, color="0.65", alpha=0.7,
                   linewidths=0, label=f"controls, matched on rate and magnitude ({ctrl.height})")
    tested = shown.filter(~pl.col("is_control"))
    kind = tested["verdict"].str.replace(r":.*", "")
    for name, colour in _VERDICT_COLOURS.items():
        part = tested.filter(kind == name)
        if not part.height:
            continue
        x, y = part[f"kl_{a}"].to_numpy(), part[f"kl_{b}"].to_numpy()
        xerr = np.abs(np.stack([x - part[f"kl_{a}_lo"].to_numpy(),
                                part[f"kl_{a}_hi"].to_numpy() - x]))
        yerr = np.abs(np.stack([y - part[f"kl_{b}_lo"].to_numpy(),
                                part[f"kl_{b}_hi"].to_numpy() - y]))
        label = {"both": "both (q < fdr in every language)", "one": "one language",
                 "neither": "neither"}[name]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, color=colour, alpha=0.85,
                    elinewidth=0.6, label=f"{label} ({part.height})")
    values = np.concatenate([shown[f"kl_{a}"].to_numpy(), shown[f"kl_{b}"].to_numpy()])
    if values.size:
        lo, hi = values.min() / 2, values.max() * 2
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.7, ls=":", label="same effect in both")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"KL(clean || ablated) in {a}, nats per position")
    ax.set_ylabel(f"KL(clean || ablated) in {b}, nats per position")
    ax.set_title(f"Does the model use the feature? Ablation effect, {a} against {b}")
    ax.legend(fontsize=7, loc="upper left")
    untested = table.filter(~pl.col("is_control")).height - tested.height
    more = f" Only {a} and {b} of {len(langs)} languages are drawn." if len(langs) > 2 else ""
    caption = (
        "Each point is one feature: the mean KL divergence of the next-token distribution, "
        "over the positions of a window from its first firing, on held-out sentences, when its "
        "contribution f_i(x) W_dec[i] is removed at the hook wherever it fires (the SAE's error "
        "kept); bars: 95% bootstrap intervals over sentences. Verdicts: Benjamini-Hochberg "
        "q-values of p-values against the grey controls after adjusting for firing rate and "
        f"magnitude (causal/verdict.py). {untested} tested feature(s) not measured in some "
        f"language are not drawn.{more}")
    return save_figure(fig, out, caption, note, style)


def plot_dictionary(dictionary: pl.DataFrame, scores: pl.DataFrame | None, out: str | Path,
                    langs: Sequence[str], *, note: str = "", checks: dict | None = None,
                    style: FigureStyle = FigureStyle(width=7.5, height=7.0)) -> Path:
    """kl_{A} against kl_{B} for every alive feature measured in both, coloured by its
    ``paired`` class, with each class's medians (crosses); `checks`: the validation per
    language (``dictionary.validation``), quoted in the caption."""
    a, b = list(langs)[:2]
    require_columns(dictionary, ["feature_id", "alive", f"kl_{a}", f"kl_{b}"],
                    "dictionary table")
    table = with_classes(dictionary, scores, [a, b])
    medians = class_medians(dictionary, scores, [a, b])
    fig, (ax,) = new_figure(style)
    for row in medians.iter_rows(named=True):
        group = row["class"]
        part = table.filter(pl.col("class") == group)
        colour = _CLASS_COLOURS.get(group.split(":")[0], "tab:gray")
        if group.startswith("lang_specific"):
            colour = "tab:blue" if group.endswith(a) else "tab:red"
        ax.scatter(part[f"kl_{a}"].clip(_KL_MIN), part[f"kl_{b}"].clip(_KL_MIN),
                   s=6 if group == "weak" else 12, color=colour,
                   alpha=0.35 if group == "weak" else 0.8, linewidths=0)
        ma, mb = row[f"kl_{a}"], row[f"kl_{b}"]
        ax.scatter([max(ma, _KL_MIN)], [max(mb, _KL_MIN)], marker="X", s=110, color=colour,
                   edgecolors="black", linewidths=0.8,
                   label=f"{group} ({part.height}): median {ma:.2g} / {mb:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lims = ax.get_xlim() + ax.get_ylim()
    ax.plot([min(lims), max(lims)], [min(lims), max(lims)], color="0.3", lw=0.7, ls=":")
    ax.set_xlabel(f"KL(clean || ablated) in {a} (nats per position)")
    ax.set_ylabel(f"KL(clean || ablated) in {b} (nats per position)")
    ax.set_title(f"The whole dictionary: ablation effect, {a} against {b}")
    ax.legend(fontsize=7, loc="upper left", title="paired class: median (x marks)")
    check = ""
    if checks:
        check = (" Against the verdicts' measurement on disjoint sentences, Spearman "
                 + ", ".join(f"{lang} {c['spearman']:.2f} [{c['lo']:.2f}, {c['hi']:.2f}] "
                             f"over {c['features']} features" for lang, c in checks.items())
                 + ".")
    caption = (
        "Every alive feature that fires in both languages on the held-out sentences: the mean "
        "KL divergence of the next-token distribution over a window from its first firing when "
        "it is ablated exactly, on its first held-out sentences where it fires, coloured by "
        f"its paired class; crosses: each class's medians (KL below {_KL_MIN:g} drawn at "
        f"{_KL_MIN:g}).{check}")
    return save_figure(fig, out, caption, note, style)
