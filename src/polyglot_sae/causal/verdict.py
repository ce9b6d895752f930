"""From per-sentence effects to effects with intervals, each tested feature's p-value against
the controls, Benjamini-Hochberg q-values, the verdicts and the summary's headline.

The null. A tested feature's statistic in a language is its mean KL over its sentences. Controls
are alive, untested features matched on firing rate and activation magnitude
(``select.control_features``). What is left of the size of an ablation's effect after rate and
magnitude is compared: log KL is regressed on (1, log rate, log magnitude) over the controls
(least squares, per language; a tested feature's covariates clipped into the controls' range,
so the fit is never extrapolated), and a tested feature's p-value is the share of controls whose
residual is at least its own, (1 + #{c: r_c >= r_f}) / (1 + n). With fewer than
``MIN_FIT`` controls measured the raw KL is compared instead. Controls are measured on fewer
sentences than tested features (``causal.control_sentences``): a noisier control mean only widens
the null, which makes the test conservative; the calibration run measures the false-positive
rate (docs/results.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

# Two-sided level of the percentile bootstrap interval of an effect.
LEVEL = 0.95
# Percentile of the control features' effects (per language) drawn as the bar in the figure.
CONTROL_PERCENTILE = 95.0
# Fewest measured controls for the covariate adjustment (3 coefficients).
MIN_FIT = 10
# Bootstrap resamples of the group test's difference of medians.
GROUP_BOOT = 2000
# Floor under KL before its log (an ablation that moves nothing).
_KL_FLOOR = 1e-12


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


def p_values(stat: np.ndarray, covariates: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Per row, the p-value of its statistic against the control rows (module docstring); NaN
    for controls, for rows not measured (NaN statistic) and when no control was measured.
    ``covariates``: (rows, c) columns of log rate and log magnitude."""
    return ranked_p_values(*log_residuals(stat, covariates, is_control), is_control)


def ranked_p_values(resid: np.ndarray, fit: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """``p_values`` from ``log_residuals``' output: each tested row's residual ranked among the
    fitted controls'."""
    out = np.full(resid.size, np.nan)
    if not fit.any():
        return out
    null = resid[fit]
    for i in np.flatnonzero(~is_control & np.isfinite(resid)):
        out[i] = (1 + np.count_nonzero(null >= resid[i])) / (1 + null.size)
    return out


def log_residuals(stat: np.ndarray, covariates: np.ndarray, fit_rows: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(log stat minus its least-squares fit on (1, covariates) over `fit_rows` (those measured),
    with covariates clipped into the fitted rows' range so the fit is never extrapolated; the
    rows the fit used). With fewer than MIN_FIT such rows, log stat itself."""
    y = np.log(np.maximum(np.asarray(stat, dtype=np.float64), _KL_FLOOR))
    x = np.column_stack([np.ones(y.size), covariates])
    fit = fit_rows & np.isfinite(stat) & np.isfinite(x).all(1)
    if fit.sum() < MIN_FIT:
        return np.where(np.isfinite(stat), y, np.nan), fit
    beta = np.linalg.lstsq(x[fit], y[fit], rcond=None)[0]
    clipped = np.clip(x, x[fit].min(0), x[fit].max(0))
    ok = np.isfinite(x).all(1) & np.isfinite(stat)
    return np.where(ok, y - clipped @ beta, np.nan), fit


def bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of the finite entries of `p` (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.size, np.nan)
    at = np.flatnonzero(np.isfinite(p))
    if at.size:
        order = at[np.argsort(p[at], kind="stable")]
        ranked = p[order] * at.size / np.arange(1, at.size + 1)
        q[order] = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    return q


def verdict(q: Sequence[float], effects: Sequence[float], langs: Sequence[str],
            fdr: float = 0.05) -> str:
    """``both`` (q < fdr in every language), ``one:{L}`` (in some: L the one of smallest q,
    ties by the larger effect), ``neither``, or ``untested`` (no language measured: every
    effect NaN). A language not measured (NaN q) is never significant."""
    q = np.asarray(q, dtype=np.float64)
    e = np.asarray(effects, dtype=np.float64)
    if np.isnan(e).all():
        return "untested"
    with np.errstate(invalid="ignore"):
        sig = np.isfinite(q) & (q < fdr)
    if sig.all():
        return "both"
    if sig.any():
        best = min(np.flatnonzero(sig), key=lambda j: (q[j], -np.nan_to_num(e[j], nan=-np.inf)))
        return f"one:{langs[int(best)]}"
    return "neither"


def group_test(tested: np.ndarray, controls: np.ndarray, seed: int = 0) -> dict[str, float]:
    """A top list as a whole against the controls, on one language's residuals (NaN dropped):
    ``median`` and ``control_median``, their difference ``diff`` with its percentile bootstrap
    interval ``lo``, ``hi`` (both groups resampled), and ``p``, the one-sided Mann-Whitney
    p-value of the tested residuals being larger; ``n`` tested. All NaN when either group is
    empty."""
    t = np.asarray(tested, dtype=np.float64)
    c = np.asarray(controls, dtype=np.float64)
    t, c = t[np.isfinite(t)], c[np.isfinite(c)]
    out = dict.fromkeys(("median", "control_median", "diff", "lo", "hi", "p"), float("nan"))
    out["n"] = t.size
    if not t.size or not c.size:
        return out
    rng = np.random.default_rng(seed)
    diffs = (np.median(t[rng.integers(0, t.size, (GROUP_BOOT, t.size))], axis=1)
             - np.median(c[rng.integers(0, c.size, (GROUP_BOOT, c.size))], axis=1))
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    out |= {"median": float(np.median(t)), "control_median": float(np.median(c)),
            "diff": float(np.median(t) - np.median(c)), "lo": float(lo), "hi": float(hi),
            "p": float(stats.mannwhitneyu(t, c, alternative="greater").pvalue)}
    return out


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
        v = _tagged(table, tag)["verdict"].to_list()
        counts = [f"{v.count('both')} both",
                  f"{sum(x.startswith('one:') for x in v)} one-language",
                  f"{v.count('neither')} neither"]
        if v.count("untested"):
            counts.append(f"{v.count('untested')} untested")
        parts.append(f"{m['method']} top {m['n']} — {', '.join(counts)}")
    n_controls = table.filter(pl.col("is_control")).height
    basis = (f" Verdicts: KL of the next-token distribution, Benjamini-Hochberg q < fdr against "
             f"{n_controls} controls matched on firing rate and magnitude."
             if any(c.startswith("q_") for c in table.columns) else "")
    return ("Causal check: " + ("; ".join(parts) if parts else "no ranked features tested")
            + "." + basis + _groups(table, list(tops)))


def _tagged(table: pl.DataFrame, tag: str) -> pl.DataFrame:
    """The tested rows whose source names `tag` (e.g. ``paired:top20``)."""
    return table.filter(~pl.col("is_control") & pl.col("source").str.split(",").list.contains(tag))


def _groups(table: pl.DataFrame, tags: Sequence[str]) -> str:
    """The summary's sentence on each top list as a group (``group_test``), when the table has
    the residuals."""
    langs = [c.removeprefix("residual_") for c in table.columns if c.startswith("residual_")]
    if not langs or not tags:
        return ""
    controls = table.filter(pl.col("is_control"))
    parts = []
    for tag in tags:
        rows = _tagged(table, tag)
        got = []
        for lang in langs:
            g = group_test(rows[f"residual_{lang}"].to_numpy(),
                           controls[f"residual_{lang}"].to_numpy())
            if g["n"]:
                got.append(f"{lang} {g['median']:+.2f} vs {g['control_median']:+.2f} "
                           f"(difference {g['diff']:+.2f} [{g['lo']:+.2f}, {g['hi']:+.2f}], "
                           f"p {g['p']:.2g})")
        if got:
            m = _TOP.match(tag)
            parts.append(f"{m['method']} top {m['n']}: " + "; ".join(got))
    return (" As a group (median residual of log KL after rate and magnitude, tested vs "
            "controls, one-sided Mann-Whitney): " + " | ".join(parts) + ".") if parts else ""
