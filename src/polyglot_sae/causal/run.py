"""The causal check on a loaded model and SAE: scan the held-out pool for firings, ablate every
feature on its sentences, steer it in the neutral contexts, and tabulate with the verdicts."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import torch

from polyglot_sae.activations.extract import Sentence, hook_batches, tokenize
from polyglot_sae.errors import InputError
from polyglot_sae.model.lean_forward import lean_forward_for
from polyglot_sae.model.load import special_token_ids

from .config import CausalConfig
from .dictionary import dictionary_table, validation
from .engine import Ablation, Effect, Resumer, effects, first_firing, steering_deltas
from .shift import Unembedding
from .select import (calibration_features, control_features, feature_words, firing_rates,
                     median_activation)
from .table import assemble

log = logging.getLogger(__name__)


class _Scan:
    """Every pool sentence's hook activations and, per feature, its first firing (-1: none)."""

    def __init__(self, model, sae, hook: str, sentences: Sequence[Sentence], batch_size: int):
        special = special_token_ids(model.tokenizer)
        self.sentences = list(sentences)
        self.acts: list[torch.Tensor] = [torch.empty(0)] * len(sentences)
        self.real: list[torch.Tensor] = [torch.empty(0)] * len(sentences)
        self.first = np.full((len(sentences), int(sae.cfg.d_sae)), -1, dtype=np.int32)
        # the lean forward where it serves the hook (Gemma-2/3 at a residual stream):
        # TransformerLens copies every weight matrix on each call
        for b in hook_batches(model, hook, self.sentences, batch_size, desc="causal scan",
                              lean=lean_forward_for(model, hook)):
            if b.acts.ndim != 3:
                raise InputError(hook, "hook", f"activation shape {tuple(b.acts.shape)} is not "
                                 "[batch, pos, d]",
                                 "use an SAE at a hook with one vector per token")
            real = torch.from_numpy(b.real(special)).to(b.acts.device)
            for row, idx in enumerate(b.index.tolist()):
                n = len(self.sentences[idx].token_ids)
                self.acts[idx] = b.acts[row, :n].clone()
                self.real[idx] = real[row, :n]
                self.first[idx] = first_firing(sae, self.acts[idx], self.real[idx]).cpu().numpy()

    def chosen(self, feature: int, langs: Sequence[str], quota: int,
               seed: int | None) -> dict[str, list[int]]:
        """Per language, up to `quota` sentences where `feature` fires, drawn at random (seeded
        by `seed` and the feature; None: the pool's first ones): first the pairs where it fires
        in every language, the same pairs in each, then pairs where it fires in that language
        only."""
        where = {lang: {} for lang in langs}
        for i, s in enumerate(self.sentences):
            if s.lang in where and self.first[i, feature] >= 0:
                where[s.lang][s.pair_id] = i
        rng = None if seed is None else np.random.default_rng([seed, feature])

        def order(pairs: set) -> list:
            if rng is None:  # pool order
                return sorted(pairs, key=lambda p: min(w[p] for w in where.values() if p in w))
            pairs = sorted(pairs)
            return [pairs[k] for k in rng.permutation(len(pairs))]

        shared = order(set.intersection(*(set(w) for w in where.values())))
        out = {}
        for lang in langs:
            rest = order(set(where[lang]) - set(shared))
            out[lang] = [where[lang][p] for p in (shared + rest)[:quota]]
        return out

    def fires_in(self, lang: str) -> np.ndarray:
        rows = [i for i, s in enumerate(self.sentences) if s.lang == lang]
        return (self.first[rows] >= 0).any(0) if rows else np.zeros(self.first.shape[1], bool)


def causal_table(model, sae, hook: str, pool: pl.DataFrame, tested: Mapping[int, Sequence[str]],
                 maxacts: pl.DataFrame, langs: Sequence[str], cfg: CausalConfig, *,
                 n_scored_pairs: int, timings: dict[str, float] | None = None,
                 checks: dict | None = None, work: dict | None = None,
                 ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(one row per tested feature and per control, see the package docstring for the columns;
    the whole dictionary (``dictionary``), or None when ``dictionary_sentences`` is 0). `pool`:
    the held-out pairs' rows (``pair_id, lang, text``) in scan order; `maxacts`: the scored
    pairs' max table (``pair_id, lang, feature_id, value, token_id``). `timings`, `checks` (the
    dictionary's validation per language) and `work` (`_ablate`'s counts) are filled in when
    given."""
    langs = list(langs)
    timings = {} if timings is None else timings
    checks = {} if checks is None else checks
    work = {} if work is None else work
    d_sae = int(sae.cfg.d_sae)
    t0 = time.perf_counter()
    with torch.inference_mode():
        scan = _Scan(model, sae, hook, tokenize(model.tokenizer, pool, cfg.max_tokens),
                     cfg.batch_size)
    timings["scan"] = time.perf_counter() - t0
    log.info("scanned %d held-out sentences in %.1f s", len(scan.sentences), timings["scan"])

    rates, alive = firing_rates(maxacts, langs, d_sae, n_scored_pairs)
    median = median_activation(maxacts, range(d_sae))
    magnitude = feature_magnitude(sae, median)
    in_pool = np.stack([scan.fires_in(lang) for lang in langs])
    if cfg.calibrate:
        picked = calibration_features(rates, alive & in_pool.any(0) & ~np.isin(
            np.arange(d_sae), list(tested)), sorted(tested), cfg.seed)
        tested = {f: [f"calibration:top{len(picked)}"] for f in picked}
    tested_ids = sorted(tested)
    is_tested = np.zeros(d_sae, dtype=bool)
    is_tested[tested_ids] = True
    measured = [f for f in tested_ids if in_pool[:, f].any()]
    controls = control_features(rates, magnitude, alive & ~is_tested & in_pool.all(0), measured,
                                cfg.controls)
    log.info("%d features under test (%d fire in the held-out pool), %d controls",
             len(tested_ids), len(measured), len(controls))

    # Tested features: sentences drawn at random across the pool. Controls and the whole
    # dictionary: the pool's first ones where they fire (the pool is a seeded permutation of
    # the held-out pairs), so that they share sentences, and the clean rows, a pass over the
    # whole vocabulary per position, are computed for few sentences; the calibration run
    # measures what this does to the verdicts' false-positive rate.
    verdict_sentences = {f: scan.chosen(f, langs, cfg.pairs_per_lang, cfg.seed)
                         for f in tested_ids}
    verdict_sentences |= {f: scan.chosen(f, langs, cfg.control_sentences, None)
                          for f in controls}
    dict_sentences = {int(f): scan.chosen(int(f), langs, cfg.dictionary_sentences, None)
                      for f in np.flatnonzero(alive & in_pool.any(0))
                      } if cfg.dictionary_sentences else {}
    t0 = time.perf_counter()
    per = _ablate(model, sae, hook, scan, [verdict_sentences, dict_sentences], cfg,
                  work)
    timings["ablation"] = time.perf_counter() - t0
    effects = {(f, lang): [per[(f, i)] for i in idx]
               for f, by_lang in verdict_sentences.items() for lang, idx in by_lang.items()}

    t0 = time.perf_counter()
    steer = _steer(model, sae, hook, Resumer.for_hook(model, hook), tested_ids, maxacts, median,
                   langs, cfg.contexts_for(langs), cfg)
    timings["steering"] = time.perf_counter() - t0

    table = assemble(tested_ids, controls, tested, rates, magnitude, effects, steer, langs, cfg,
                     model.tokenizer)
    dictionary = None
    if dict_sentences:
        dictionary = dictionary_table(per, dict_sentences, langs, alive, rates, magnitude)
        checks.update(validation(dictionary, per, verdict_sentences, dict_sentences, langs))
    log.info("causal table: %d rows; %s", table.height,
             ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return table, dictionary


def feature_magnitude(sae, median: Mapping[int, float]) -> np.ndarray:
    """Per feature, the size of what an ablation removes where it fires: the median of its
    nonzero per-sentence maxima (scored pairs, ``select.median_activation``) times its decoder
    norm (NaN if it never fires)."""
    d_sae = int(sae.cfg.d_sae)
    norm = sae.W_dec.detach().float().norm(dim=1).cpu().numpy()
    return np.array([median[f] for f in range(d_sae)]) * norm


def _ablate(model, sae, hook: str, scan: _Scan,
            plans: Sequence[Mapping[int, Mapping[str, Sequence[int]]]],
            cfg: CausalConfig, counts: dict) -> dict[tuple[int, int], Effect]:
    """(feature, sentence index) -> its Effect, for every sentence of every feature in `plans`
    (feature -> language -> sentence indices), each pair once: sentence by sentence, the clean
    run beside every feature chosen for it. `counts` gets the work done (``engine.effects``'s,
    ``ablations``, ``sentences``)."""
    work: dict[int, set[int]] = defaultdict(set)
    for plan in plans:
        for f, by_lang in plan.items():
            for idx in by_lang.values():
                for i in idx:
                    work[i].add(f)
    resumer = Resumer.for_hook(model, hook)
    unembed = Unembedding(model)
    device = scan.acts[0].device if scan.acts else torch.device("cpu")
    order = sorted(work)
    jobs = {i: sorted((Ablation(f, int(scan.first[i, f])) for f in work[i]),
                      key=lambda a: (a.start, a.feature)) for i in order}
    with torch.inference_mode():
        got = effects(resumer, sae, [(torch.tensor(scan.sentences[i].token_ids, device=device),
                                      scan.acts[i], scan.real[i], jobs[i]) for i in order],
                      cfg.batch_size, cfg.window, cfg.top_k, unembed, counts)
    counts.update(ablations=sum(len(v) for v in work.values()), sentences=len(work))
    log.info("ablations: %s", counts)
    return {(a.feature, i): e for i, per in zip(order, got) for a, e in zip(jobs[i], per)}


def _steer(model, sae, hook: str, resumer: Resumer, features: Sequence[int],
           maxacts: pl.DataFrame, median: Mapping[int, float], langs: Sequence[str],
           contexts: Mapping[str, Sequence[str]], cfg: CausalConfig) -> dict[str, object]:
    """Per feature: its words and alpha, and steer_{ctx}_{word} (mean over the contexts);
    ``median``: each feature's median max activation (alpha's unit)."""
    words = feature_words(maxacts, features, langs, top_pairs=cfg.word_pairs,
                          k=cfg.words_per_lang)
    alphas = [cfg.alpha * median[f] for f in features]
    ok = [k for k, f in enumerate(features) if np.isfinite(alphas[k])]
    sums = np.zeros((len(features), len(langs), len(langs)))
    counts = np.zeros(len(langs))
    ctx_pairs = pl.DataFrame({"pair_id": list(range(sum(len(v) for v in contexts.values()))),
                              "lang": [lang for lang in langs for _ in contexts[lang]],
                              "text": [t for lang in langs for t in contexts[lang]]})
    sentences = tokenize(model.tokenizer, ctx_pairs, cfg.max_tokens)
    contexts, ctx_langs = [], []
    with torch.inference_mode():
        for b in hook_batches(model, hook, sentences, cfg.batch_size, desc="causal contexts"):
            for row, s in enumerate(b.sentences):
                n = len(s.token_ids)
                contexts.append((torch.tensor(s.token_ids, device=b.acts.device),
                                 b.acts[row, :n].clone()))
                ctx_langs.append(langs.index(s.lang))
        got = steering_deltas(resumer, sae, contexts, [features[k] for k in ok],
                              [alphas[k] for k in ok],
                              [[words[features[k]][w] for w in langs] for k in ok],
                              cfg.batch_size) if ok else [[] for _ in contexts]
    for c, per_feature in zip(ctx_langs, got):
        counts[c] += 1
        for k, d in zip(ok, per_feature):
            sums[k, c] += np.asarray(d)
    steer = np.full_like(sums, np.nan)
    steer[ok] = sums[ok] / counts[None, :, None]
    return {"words": words, "alphas": alphas, "steer": steer}
