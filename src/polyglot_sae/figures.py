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


@dataclass(frozen=True)
class FigureStyle:
    """Size and resolution shared by every figure."""

    width: float = 11.0  # inches; two panels side by side stay legible at this width
    height: float = 5.5  # inches, caption included
    dpi: int = 120  # ~1300 x 660 px: sharp in the Snakemake report without large files
    caption_size: float = 8.5  # points; small, as a caption, but readable at 100% zoom


DEFAULT_STYLE = FigureStyle()


def require_columns(table: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(what, ", ".join(missing), f"missing column(s) (has {table.columns})",
                         f"pass a table with columns {list(columns)}")


def new_figure(style: FigureStyle, *, nrows: int = 1, ncols: int = 1, sharex: bool = False,
            sharey: bool = False, height_ratios: Sequence[float] | None = None):
    fig = Figure(figsize=(style.width, style.height), dpi=style.dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, list(axes.ravel())


def log_x_if_wide(ax, x: np.ndarray) -> None:
    # Beta ranks are usually spaced geometrically (10, 30, 100, 300, ...).
    if x.size and x.min() > 0 and x.max() / x.min() >= 20:
        ax.set_xscale("log")
    elif x.size and x.min() == 0 and x.max() >= 20:
        ax.set_xscale("symlog", linthresh=1.0)
        # symlog's autoscale would show an empty negative half.
        ax.set_xlim(-0.5, x.max() * 1.3)


def ticks_at(ax, x: np.ndarray) -> None:
    """Label the measured x values themselves: log axes otherwise print crowded 3x10^2 labels."""
    if 0 < x.size <= 12:
        ax.set_xticks(x, labels=[f"{v:,.0f}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())


def save_figure(fig: Figure, out: str | Path, caption: str, note: str, style: FigureStyle) -> Path:
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
