"""The causal table: per tested feature and control, its effects with intervals, p- and q-values
and verdict, its steering; the significance columns follow from the table's own rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from .config import CausalConfig
from .engine import Effect
from .verdict import (bh, control_bar, effect_interval, log_residuals, ranked_p_values,
                      verdict)


def covariates(table: pl.DataFrame) -> np.ndarray:
    """The p-values' covariates of each row: log firing rate, log magnitude."""
    rate = table["firing_rate"].to_numpy().astype(np.float64)
    mag = table["magnitude"].to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.column_stack([np.log(np.maximum(rate, 1e-12)),
                                np.log(np.where(mag > 0, mag, np.nan))])


def significance(table: pl.DataFrame, langs: Sequence[str], fdr: float) -> pl.DataFrame:
    """``p_{L}``, ``q_{L}``, ``residual_{L}`` (what the p-value ranks: log KL minus its fit on
    the controls), ``control_p95_{L}`` and ``verdict`` from the table's ``kl_{L}``,
    ``is_control``, ``firing_rate`` and ``magnitude`` (``verdict``'s method)."""
    is_control = table["is_control"].to_numpy()
    cov = covariates(table)
    cols = {}
    for lang in langs:
        kl = table[f"kl_{lang}"].to_numpy().astype(np.float64)
        resid, fit = log_residuals(kl, cov, is_control)
        p = ranked_p_values(resid, fit, is_control)
        cols[f"residual_{lang}"] = resid
        cols[f"p_{lang}"] = p
        cols[f"q_{lang}"] = bh(p)
        cols[f"control_p95_{lang}"] = np.full(table.height, control_bar(kl[is_control]))
    q = np.column_stack([cols[f"q_{lang}"] for lang in langs])
    kl = np.column_stack([table[f"kl_{lang}"].to_numpy() for lang in langs])
    cols["verdict"] = [verdict(q[k], kl[k], langs, fdr) for k in range(table.height)]
    return table.with_columns(**{k: pl.Series(k, v) for k, v in cols.items()})


def assemble(tested_ids: Sequence[int], controls: Sequence[int],
             tested: Mapping[int, Sequence[str]], rates: np.ndarray, magnitude: np.ndarray,
             effects: Mapping[tuple[int, str], Sequence[Effect]], steer: Mapping[str, object],
             langs: Sequence[str], cfg: CausalConfig, tokenizer) -> pl.DataFrame:
    features = list(tested_ids) + list(controls)
    n, k = len(features), len(langs)
    ce = np.full((n, k, 3), np.nan)
    kl = np.full((n, k, 3), np.nan)
    count = np.zeros((n, k), dtype=np.uint32)
    clean = np.full((n, k), np.nan)
    for r, f in enumerate(features):
        for j, lang in enumerate(langs):
            got = effects.get((f, lang), [])
            kl[r, j] = effect_interval([e.kl for e in got], cfg.bootstrap, (cfg.seed, f, j, 1))
            ce[r, j] = effect_interval([e.dce for e in got], cfg.bootstrap, (cfg.seed, f, j))
            count[r, j] = len(got)
            if got:
                clean[r, j] = float(np.mean([e.clean for e in got]))
    ids = np.asarray(features, dtype=np.int64)
    cols: dict[str, object] = {
        "feature_id": pl.Series(features, dtype=pl.UInt32),
        "source": [",".join(tested.get(f, ["control"])) for f in features],
        "is_control": np.arange(n) >= len(tested_ids),
        "firing_rate": rates[ids] if n else np.zeros(0),
        "magnitude": magnitude[ids] if n else np.zeros(0),
    }
    for j, lang in enumerate(langs):
        cols[f"effect_{lang}"] = ce[:, j, 0]
        cols[f"effect_{lang}_lo"] = ce[:, j, 1]
        cols[f"effect_{lang}_hi"] = ce[:, j, 2]
        cols[f"kl_{lang}"] = kl[:, j, 0]
        cols[f"kl_{lang}_lo"] = kl[:, j, 1]
        cols[f"kl_{lang}_hi"] = kl[:, j, 2]
        cols[f"n_sentences_{lang}"] = pl.Series(count[:, j], dtype=pl.UInt32)
        cols[f"clean_loss_{lang}"] = clean[:, j]
    # steering: tested features only (controls make the null of the ablation, nothing else)
    pad = len(controls)
    cols["alpha"] = np.concatenate([np.asarray(steer["alphas"], dtype=np.float64),
                                    np.full(pad, np.nan)])
    words = steer["words"]
    for lang in langs:
        cols[f"words_{lang}"] = pl.Series(
            [tokenizer.convert_ids_to_tokens(words[f][lang]) for f in tested_ids] + [[]] * pad,
            dtype=pl.List(pl.String))
    grid = np.concatenate([steer["steer"], np.full((pad, k, k), np.nan)]) if n else \
        np.zeros((0, k, k))
    for c, ctx in enumerate(langs):
        for w, word in enumerate(langs):
            cols[f"steer_{ctx}_{word}"] = grid[:, c, w]
    table = significance(pl.DataFrame(cols), langs, cfg.fdr)
    first = ["feature_id", "source", "is_control", "verdict", "firing_rate", "magnitude"]
    return table.select(first + [c for c in table.columns if c not in first]).sort(
        "is_control", "feature_id")
