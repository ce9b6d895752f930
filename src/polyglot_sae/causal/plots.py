"""The causal check's figure: each tested feature's ablation effect in one language against the
other, coloured by why it was tested, with the controls and their bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.figures import FigureStyle, new_figure, require_columns, save_figure

_COLOURS = ("tab:green", "tab:blue", "tab:red", "tab:orange", "tab:purple", "tab:brown",
            "tab:pink", "tab:olive", "tab:cyan")


def plot_causal(table: pl.DataFrame, out: str | Path, langs: Sequence[str], *, note: str = "",
                style: FigureStyle = FigureStyle(width=7.5, height=7.0)) -> Path:
    """effect_{A} (x) against effect_{B} (y) for the first two languages, on symmetric-log
    axes; the dashed lines are the controls' 95th percentiles (the bars)."""
    a, b = list(langs)[:2]
    need = ["feature_id", "source", "is_control", "verdict", f"effect_{a}", f"effect_{b}",
            f"control_p95_{a}", f"control_p95_{b}"]
    require_columns(table, need, "causal table")
    fig, (ax,) = new_figure(style)
    shown = table.filter(pl.col(f"effect_{a}").is_not_nan() & pl.col(f"effect_{b}").is_not_nan()
                         & pl.col(f"effect_{a}").is_not_null()
                         & pl.col(f"effect_{b}").is_not_null())
    untested = table.height - shown.height
    first = shown.with_columns(group=pl.col("source").str.split(",").list.first())
    groups = [g for g in dict.fromkeys(first.filter(~pl.col("is_control"))["group"].to_list())]
    for k, group in enumerate(groups):
        part = first.filter(~pl.col("is_control") & (pl.col("group") == group))
        both = part["verdict"].to_list().count("both")
        ax.scatter(part[f"effect_{a}"].to_numpy(), part[f"effect_{b}"].to_numpy(), s=22,
                   color=_COLOURS[k % len(_COLOURS)], alpha=0.85, linewidths=0,
                   label=f"{group} ({part.height}; {both} both)")
    ctrl = first.filter(pl.col("is_control"))
    if ctrl.height:
        ax.scatter(ctrl[f"effect_{a}"].to_numpy(), ctrl[f"effect_{b}"].to_numpy(), s=14,
                   color="0.6", alpha=0.8, linewidths=0, label=f"controls ({ctrl.height})")
    bar_a = float(table[f"control_p95_{a}"][0]) if table.height else float("nan")
    bar_b = float(table[f"control_p95_{b}"][0]) if table.height else float("nan")
    values = np.concatenate([shown[f"effect_{a}"].to_numpy(), shown[f"effect_{b}"].to_numpy(),
                             [v for v in (bar_a, bar_b) if np.isfinite(v)]])
    hi = float(np.abs(values).max()) * 1.5 if values.size else 1.0
    lo = min(0.0, float(values.min()) * 1.5) if values.size else 0.0
    finite_bars = [abs(v) for v in (bar_a, bar_b) if np.isfinite(v) and v != 0]
    lin = max(min(finite_bars) if finite_bars else 1e-3, 1e-4)
    ax.set_xscale("symlog", linthresh=lin)
    ax.set_yscale("symlog", linthresh=lin)
    ax.set_xlim(lo - lin, hi + lin)
    ax.set_ylim(lo - lin, hi + lin)
    if np.isfinite(bar_a):
        ax.axvline(bar_a, color="0.35", ls="--", lw=0.9, label=f"control p95 ({a}, {b})")
    if np.isfinite(bar_b):
        ax.axhline(bar_b, color="0.35", ls="--", lw=0.9)
    if np.isfinite(bar_a) and np.isfinite(bar_b):
        ax.fill_between([lo - lin, bar_a], lo - lin, bar_b, color="0.9", zorder=0,
                        label="below both bars")
    ax.plot([lo - lin, hi + lin], [lo - lin, hi + lin], color="0.3", lw=0.7, ls=":",
            label="same effect in both")
    ax.set_xlabel(f"loss increase in {a} when the feature is ablated (nats per token)")
    ax.set_ylabel(f"loss increase in {b} when the feature is ablated (nats per token)")
    ax.set_title(f"Does the model use the feature? Ablation effect, {a} against {b}")
    ax.legend(fontsize=7, loc="upper left")
    more = f" Only {a} and {b} of {len(langs)} languages are drawn." if len(langs) > 2 else ""
    caption = (
        "Each point is one feature: the mean increase of next-token cross-entropy on held-out "
        "sentences, from its first firing on, when its contribution f_i(x) W_dec[i] is removed "
        "at the hook wherever it fires (the SAE's error kept). Colours: why it was tested (its "
        "first source); grey: control features matched by firing rate; dashed lines: the "
        f"controls' 95th percentile per language. {untested} feature(s) never fired in the "
        f"held-out pool in some language and are not drawn.{more}")
    return save_figure(fig, out, caption, note, style)
