"""From per-sentence loss increases to effects with intervals, the controls' bar, each feature's
verdict and the summary's headline."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

# Two-sided level of the percentile bootstrap interval of an effect.
LEVEL = 0.95
# Percentile of the control features' effects (per language) that a tested effect must exceed.
CONTROL_PERCENTILE = 95.0
# `both` also needs the smallest language effect to reach this share of the largest: a feature
# the model uses ten times more in one language is not used alike in both.
BALANCE = 0.5


def effect_interval(deltas: Sequence[float], n_boot: int, seed: Sequence[int],
                    ) -> tuple[float, float, float]:
    """Mean of the per-sentence deltas and its percentile bootstrap interval over sentences
    (NaN, NaN, NaN for no sentences)."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(list(seed))
    means = d[rng.integers(0, d.size, (n_boot, d.size))].mean(axis=1)
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(lo), float(hi)


def control_bar(effects: np.ndarray) -> float:
    """The controls' CONTROL_PERCENTILE-th percentile of one language's effects (NaN when no
    control was measured)."""
    e = np.asarray(effects, dtype=np.float64)
    e = e[~np.isnan(e)]
    return float(np.percentile(e, CONTROL_PERCENTILE)) if e.size else float("nan")


def verdict(effects: Sequence[float], bars: Sequence[float], langs: Sequence[str]) -> str:
    """``both`` (every language above its bar, the smallest effect >= BALANCE x the largest),
    ``one:{L}`` (else, some language above its bar: L the one of largest effect among those),
    ``neither``, or ``untested`` (no language measured). A language not measured (NaN effect)
    or without a bar is never above it."""
    e = np.asarray(effects, dtype=np.float64)
    b = np.asarray(bars, dtype=np.float64)
    if np.isnan(e).all():
        return "untested"
    with np.errstate(invalid="ignore"):
        above = ~np.isnan(e) & ~np.isnan(b) & (e > b)
    if above.all() and e.min() >= BALANCE * e.max():
        return "both"
    if above.any():
        return f"one:{langs[int(np.argmax(np.where(above, e, -np.inf)))]}"
    return "neither"


_TOP = re.compile(r"^(?P<method>[^:]+):top(?P<n>\d+)$")


def headline(table: pl.DataFrame) -> str:
    """One line for the summary: per method, what the causal check says of its top list, e.g.
    "Causal check: paired top 20 — 12 both, 5 one-language, 3 neither; seed top 20 — ...". """
    parts = []
    sources = table.filter(~pl.col("is_control"))["source"].to_list()
    tops = dict.fromkeys(m.group(0) for s in sources for tag in s.split(",")
                         if (m := _TOP.match(tag)))
    for tag in tops:
        m = _TOP.match(tag)
        rows = table.filter(~pl.col("is_control")
                            & pl.col("source").str.split(",").list.contains(tag))
        v = rows["verdict"].to_list()
        counts = [f"{v.count('both')} both",
                  f"{sum(x.startswith('one:') for x in v)} one-language",
                  f"{v.count('neither')} neither"]
        if v.count("untested"):
            counts.append(f"{v.count('untested')} untested")
        parts.append(f"{m['method']} top {m['n']} — {', '.join(counts)}")
    return "Causal check: " + ("; ".join(parts) if parts else "no ranked features tested") + "."
