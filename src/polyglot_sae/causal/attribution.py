"""The whole dictionary: every feature's effect on the next-token loss per language, estimated
by attribution instead of ablated one by one.

For a sentence with hook activations x (positions s) and g_s = d(sum_t CE_t) / dx_s (one forward
from the hook and one backward; CE_t the cross-entropy of token t+1), removing feature i
changes x_s by -f_i(x_s) W_dec[i] at every real position where it fires, and the loss by about

    a_i = -sum_s f_i(x_s) (g_s . W_dec[i]),

its first-order (attribution patching) estimate. Divided by the loss positions from the
feature's first firing to the end of the sentence, it estimates the mean loss increase that
exact ablation (``engine.sentence_effects`` with ``window=None``) measures; the bench checks the
two against each other (rank correlation per language, docs/benchmarks.md). The gradient of CE
at a position is mu - W_U[:, y] through the final norm (mu = W_U p), from the full softmax.

Sentences: the first ``attribution_pairs`` pairs of the held-out pool, every language's row of
each (the same verses in every language). Per feature and language: ``attr_{L}``, the mean of
the per-sentence estimates over the sentences where it fires, and ``n_attr_{L}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from .engine import Resumer
from .shift import final_norm


def sentence_attribution(resumer: Resumer, sae, tokens: torch.Tensor, acts: torch.Tensor,
                         real: torch.Tensor, first: np.ndarray) -> np.ndarray:
    """Per feature, the estimated mean loss increase of ablating it over the positions from its
    first firing (``first``, -1: none) to the end of the sentence; NaN where it does not fire."""
    model = resumer.model
    n = tokens.shape[0]
    x = acts.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        final = resumer.final_resid(tokens[None], x[None])[0]
        normed = final_norm(model, final)
        with torch.no_grad():
            p = torch.softmax((normed[:n - 1] @ model.W_U + model.b_U).float(), dim=-1)
            grad = p @ model.W_U.T.float() - model.W_U[:, tokens[1:]].T.float()
        (normed[:n - 1] * grad).sum().backward()
    with torch.no_grad():
        codes = sae.encode(acts.to(sae.dtype)).float() * real[:, None].float()
        est = -(codes * (x.grad.float() @ sae.W_dec.float().T)).sum(0).cpu().numpy()
    positions = n - 1 - first
    return np.where(first >= 0, est / np.maximum(positions, 1), np.nan)


def attribution_table(model, sae, hook: str, scan, langs: Sequence[str], n_pairs: int,
                      alive: np.ndarray, rates: np.ndarray, magnitude: np.ndarray,
                      ) -> pl.DataFrame:
    """``feature_id, alive, firing_rate, magnitude`` and per language ``attr_{L}``,
    ``n_attr_{L}`` over the scan's first `n_pairs` pairs (module docstring)."""
    resumer = Resumer.for_hook(model, hook)
    d_sae = int(sae.cfg.d_sae)
    pairs = list(dict.fromkeys(s.pair_id for s in scan.sentences))[:n_pairs]
    keep = set(pairs)
    total = {lang: np.zeros(d_sae) for lang in langs}
    count = {lang: np.zeros(d_sae, dtype=np.int64) for lang in langs}
    for i, s in enumerate(scan.sentences):
        if s.pair_id not in keep or s.lang not in total or len(s.token_ids) < 2:
            continue
        tokens = torch.tensor(s.token_ids, device=scan.acts[i].device)
        est = sentence_attribution(resumer, sae, tokens, scan.acts[i], scan.real[i],
                                   scan.first[i].astype(np.int64))
        fired = np.isfinite(est)
        total[s.lang][fired] += est[fired]
        count[s.lang] += fired
    cols = {"feature_id": np.arange(d_sae, dtype=np.uint32), "alive": alive,
            "firing_rate": rates, "magnitude": magnitude}
    for lang in langs:
        with np.errstate(invalid="ignore", divide="ignore"):
            cols[f"attr_{lang}"] = np.where(count[lang] > 0, total[lang] / count[lang], np.nan)
        cols[f"n_attr_{lang}"] = count[lang]
    return pl.DataFrame(cols).with_columns(
        pl.col(f"attr_{lang}").fill_nan(None) for lang in langs)


def with_classes(attribution: pl.DataFrame, scores: pl.DataFrame | None,
                 langs: Sequence[str]) -> pl.DataFrame:
    """The alive features measured in every language, each with its ``paired`` class
    (``all`` without scores, ``other`` for a feature the scores lack)."""
    table = attribution.filter(pl.col("alive") & pl.all_horizontal(
        pl.col(f"attr_{lang}").is_not_null() for lang in langs))
    if scores is not None and "class" in scores.columns:
        table = table.join(scores.select("feature_id", "class"), on="feature_id", how="left")
    else:
        table = table.with_columns(**{"class": pl.lit("all")})
    return table.with_columns(pl.col("class").fill_null("other"))


def class_medians(attribution: pl.DataFrame, scores: pl.DataFrame | None,
                  langs: Sequence[str]) -> pl.DataFrame:
    """Per class of ``with_classes``: its features and the median of ``attr_{L}`` per
    language, most features first."""
    return (with_classes(attribution, scores, langs).group_by("class")
            .agg(pl.len().alias("features"), *(pl.col(f"attr_{lang}").median() for lang in langs))
            .sort("features", "class", descending=[True, False]))


def headline(attribution: pl.DataFrame, scores: pl.DataFrame | None,
             langs: Sequence[str]) -> str:
    """One line for the summary: each class's median estimated effect per language."""
    medians = class_medians(attribution, scores, langs)
    parts = [f"{row['class']} ({row['features']}) " + " / ".join(
        f"{row[f'attr_{lang}']:.2g}" for lang in langs) for row in medians.iter_rows(named=True)]
    return (f"Whole dictionary (attribution estimate of the loss increase when ablated, median "
            f"per paired class, {' / '.join(langs)}, nats per position): "
            + ("; ".join(parts) if parts else "no alive feature measured in every language")
            + ".")
