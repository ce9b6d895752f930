"""The whole dictionary: every alive feature's effect per language, by exact ablation on a few
held-out sentences.

Per alive feature and language, the verdicts' statistic (`engine.effects`: KL(clean || ablated)
of the next-token distribution over the window from its first firing), averaged over the first
``dictionary_sentences`` sentences of the held-out pool where it fires: the pool's order (a
seeded permutation of the held-out pairs), the pairs where it fires in every language first, so
that the languages are compared on the same verses. The pool's first sentences rather than
random ones make the features share sentences, and the clean rows (a pass over the whole
vocabulary per position) are then computed for few sentences; an ablation the verdicts also
need is computed once.

Validated against the verdicts' own measurement (`validation`): for the tested features and the
controls, the mean over their randomly drawn sentences that are not among the dictionary's
(disjoint data), against the dictionary's estimate: Spearman's rank correlation per language
with a Fisher-z 95% interval.

Per class of the paired table (`class_medians`): the median KL per language, and the median
residual of log KL after a least-squares fit on log firing rate and log magnitude over every
measured feature (`verdict.log_residuals`): a class above 0 is used more than the size of what
its ablation removes predicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from .engine import Effect
from .verdict import log_residuals

# Fewest disjoint sentences of a feature's verdict measurement for it to enter the validation.
MIN_DISJOINT = 4


def per_language(effects: Mapping[tuple[int, int], Effect],
                 sentences: Mapping[int, Mapping[str, Sequence[int]]], langs: Sequence[str],
                 d_sae: int, fields: Sequence[str] = ("kl", "dce"),
                 ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Per field and language, each feature's mean of that Effect field over its sentences
    (NaN without one); per language their number. `effects`: (feature, sentence index) ->
    Effect."""
    mean = {f: {lang: np.full(d_sae, np.nan) for lang in langs} for f in fields}
    count = {lang: np.zeros(d_sae, dtype=np.int64) for lang in langs}
    for feature, by_lang in sentences.items():
        for lang in langs:
            got = [effects[(feature, i)] for i in by_lang.get(lang, [])]
            if got:
                count[lang][feature] = len(got)
                for f in fields:
                    mean[f][lang][feature] = float(np.mean([getattr(e, f) for e in got]))
    return mean, count


def dictionary_table(effects: Mapping[tuple[int, int], Effect],
                     sentences: Mapping[int, Mapping[str, Sequence[int]]], langs: Sequence[str],
                     alive: np.ndarray, rates: np.ndarray, magnitude: np.ndarray) -> pl.DataFrame:
    """``feature_id, alive, firing_rate, magnitude, residual_{L}`` and per language ``kl_{L}``,
    ``dce_{L}`` (the observed token's cross-entropy change) and ``n_dict_{L}`` (sentences)."""
    d_sae = alive.size
    mean, count = per_language(effects, sentences, langs, d_sae)
    cols = {"feature_id": np.arange(d_sae, dtype=np.uint32), "alive": alive,
            "firing_rate": rates, "magnitude": magnitude}
    with np.errstate(divide="ignore", invalid="ignore"):
        covariates = np.column_stack([np.log(rates), np.log(magnitude)])
    for lang in langs:
        cols[f"kl_{lang}"], cols[f"dce_{lang}"] = mean["kl"][lang], mean["dce"][lang]
        cols[f"n_dict_{lang}"] = count[lang]
        cols[f"residual_{lang}"] = log_residuals(mean["kl"][lang], covariates, alive)[0]
    return pl.DataFrame(cols).with_columns(
        pl.col(c).fill_nan(None) for c in cols if c.startswith(("kl_", "dce_", "residual_")))


def validation(table: pl.DataFrame, effects: Mapping[tuple[int, int], Effect],
               verdict_sentences: Mapping[int, Mapping[str, Sequence[int]]],
               dict_sentences: Mapping[int, Mapping[str, Sequence[int]]], langs: Sequence[str],
               ) -> dict[str, dict[str, float]]:
    """Per language: ``features`` (those with at least MIN_DISJOINT verdict sentences outside
    the dictionary's), ``spearman`` between their verdict mean over those sentences and the
    dictionary's estimate, and its Fisher-z 95% interval ``lo``, ``hi`` (NaN under 4 features)."""
    out = {}
    for lang in langs:
        est = table[f"kl_{lang}"].to_numpy()
        x, y = [], []
        for f, by_lang in verdict_sentences.items():
            mine = set(dict_sentences.get(f, {}).get(lang, []))
            rest = [effects[(f, i)].kl for i in by_lang.get(lang, []) if i not in mine]
            if len(rest) >= MIN_DISJOINT and np.isfinite(est[f]):
                x.append(est[f])
                y.append(float(np.mean(rest)))
        n = len(x)
        rho = lo = hi = float("nan")
        if n >= 4:
            rho = float(stats.spearmanr(x, y).statistic)
            # the Fisher-z standard error of Spearman's rho (Fieller, Hartley and Pearson)
            half = 1.96 * math.sqrt(1.06 / (n - 3))
            z = math.atanh(min(max(rho, -0.999999), 0.999999))
            lo, hi = math.tanh(z - half), math.tanh(z + half)
        out[lang] = {"features": n, "spearman": rho, "lo": lo, "hi": hi}
    return out


def with_classes(table: pl.DataFrame, scores: pl.DataFrame | None,
                 langs: Sequence[str]) -> pl.DataFrame:
    """The alive features measured in every language, each with its ``paired`` class
    (``all`` without scores, ``other`` for a feature the scores lack)."""
    table = table.filter(pl.col("alive") & pl.all_horizontal(
        pl.col(f"kl_{lang}").is_not_null() for lang in langs))
    if scores is not None and "class" in scores.columns:
        table = table.join(scores.select("feature_id", "class"), on="feature_id", how="left")
    else:
        table = table.with_columns(**{"class": pl.lit("all")})
    return table.with_columns(pl.col("class").fill_null("other"))


def class_medians(table: pl.DataFrame, scores: pl.DataFrame | None,
                  langs: Sequence[str]) -> pl.DataFrame:
    """Per class of ``with_classes``: its features, and per language the median of ``kl_{L}``
    and of ``residual_{L}``; most features first."""
    return (with_classes(table, scores, langs).group_by("class")
            .agg(pl.len().alias("features"),
                 *(pl.col(f"{c}_{lang}").median() for lang in langs for c in ("kl", "residual")))
            .sort("features", "class", descending=[True, False]))


def headline(table: pl.DataFrame, scores: pl.DataFrame | None, langs: Sequence[str],
             checks: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """One line for the summary: each class's median KL and residual per language, and the
    validation's rank correlations."""
    medians = class_medians(table, scores, langs)
    parts = [f"{row['class']} ({row['features']}) " + " / ".join(
        f"{row[f'kl_{lang}']:.2g} ({row[f'residual_{lang}']:+.2f})" for lang in langs)
        for row in medians.iter_rows(named=True)]
    check = ""
    if checks:
        check = " Checked against the verdicts' sentences (disjoint): Spearman " + ", ".join(
            f"{lang} {c['spearman']:.2f} [{c['lo']:.2f}, {c['hi']:.2f}] over {c['features']}"
            for lang, c in checks.items()) + "."
    return ("Whole dictionary (exact ablation on a few held-out sentences per feature; median "
            f"KL per paired class, {' / '.join(langs)}, nats per position, with the median "
            "residual of log KL after firing rate and magnitude): "
            + ("; ".join(parts) if parts else "no alive feature measured in every language")
            + "." + check)
