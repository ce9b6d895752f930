"""The causal check on a loaded model and SAE: scan the held-out pool for firings, ablate every
feature on its sentences, steer it in the neutral contexts, and tabulate with the verdicts."""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from polyglot_sae.activations.extract import Sentence, hook_batches, tokenize
from polyglot_sae.errors import InputError
from polyglot_sae.model.load import special_token_ids

from .config import CausalConfig
from .engine import (Ablation, LossBank, Resumer, first_firing, queue_sentence, read_deltas,
                     steering_deltas)
from .select import control_features, feature_words, firing_rates, median_activation
from .verdict import control_bar, effect_interval, verdict

log = logging.getLogger(__name__)


class _Scan:
    """Every pool sentence's hook activations and, per feature, its first firing (-1: none)."""

    def __init__(self, model, sae, hook: str, sentences: Sequence[Sentence], batch_size: int):
        special = special_token_ids(model.tokenizer)
        self.sentences = list(sentences)
        self.acts: list[torch.Tensor] = [torch.empty(0)] * len(sentences)
        self.real: list[torch.Tensor] = [torch.empty(0)] * len(sentences)
        self.first = np.full((len(sentences), int(sae.cfg.d_sae)), -1, dtype=np.int32)
        for b in hook_batches(model, hook, self.sentences, batch_size, desc="causal scan"):
            if b.acts.ndim != 3:
                raise InputError(hook, "hook", f"activation shape {tuple(b.acts.shape)} is not "
                                 "[batch, pos, d]", "use an SAE at a hook with one vector per token")
            real = torch.from_numpy(b.real(special)).to(b.acts.device)
            for row, idx in enumerate(b.index.tolist()):
                n = len(self.sentences[idx].token_ids)
                self.acts[idx] = b.acts[row, :n].clone()
                self.real[idx] = real[row, :n]
                self.first[idx] = first_firing(sae, self.acts[idx], self.real[idx]).cpu().numpy()

    def chosen(self, feature: int, lang: str, quota: int) -> list[int]:
        """The first `quota` sentences of `lang` (pool order) where `feature` fires."""
        idx = [i for i, s in enumerate(self.sentences)
               if s.lang == lang and self.first[i, feature] >= 0]
        return idx[:quota]

    def fires_in(self, lang: str) -> np.ndarray:
        rows = [i for i, s in enumerate(self.sentences) if s.lang == lang]
        return (self.first[rows] >= 0).any(0) if rows else np.zeros(self.first.shape[1], bool)


def causal_table(model, sae, hook: str, pool: pl.DataFrame, tested: Mapping[int, Sequence[str]],
                 maxacts: pl.DataFrame, langs: Sequence[str], cfg: CausalConfig, *,
                 n_scored_pairs: int, timings: dict[str, float] | None = None) -> pl.DataFrame:
    """One row per tested feature and per control (see the package docstring for the columns).
    `pool`: the held-out pairs' rows (``pair_id, lang, text``) in scan order; `maxacts`: the
    scored pairs' max table (``pair_id, lang, feature_id, value, token_id``)."""
    langs = list(langs)
    timings = {} if timings is None else timings
    d_sae = int(sae.cfg.d_sae)
    contexts = cfg.contexts_for(langs)
    t0 = time.perf_counter()
    with torch.inference_mode():
        scan = _Scan(model, sae, hook, tokenize(model.tokenizer, pool, cfg.max_tokens),
                     cfg.batch_size)
    timings["scan"] = time.perf_counter() - t0
    log.info("scanned %d held-out sentences in %.1f s", len(scan.sentences), timings["scan"])

    rates, alive = firing_rates(maxacts, langs, d_sae, n_scored_pairs)
    in_pool = np.stack([scan.fires_in(lang) for lang in langs])
    tested_ids = sorted(tested)
    is_tested = np.zeros(d_sae, dtype=bool)
    is_tested[tested_ids] = True
    measured = [f for f in tested_ids if in_pool[:, f].any()]
    controls = control_features(rates, alive & ~is_tested & in_pool.all(0), measured,
                                cfg.controls)
    features = tested_ids + controls
    log.info("%d features under test (%d fire in the held-out pool), %d controls",
             len(tested_ids), len(measured), len(controls))

    # Ablation: sentence by sentence, the clean run beside every feature chosen for it.
    t0 = time.perf_counter()
    work: dict[int, list[Ablation]] = defaultdict(list)
    for f in features:
        for lang in langs:
            for i in scan.chosen(f, lang, cfg.pairs_per_lang):
                work[i].append(Ablation(f, int(scan.first[i, f])))
    resumer = Resumer.for_hook(model, hook)
    deltas: dict[tuple[int, str], list[float]] = defaultdict(list)
    base: dict[tuple[int, str], list[float]] = defaultdict(list)
    device = scan.acts[0].device if scan.acts else torch.device("cpu")
    bank = LossBank(model)
    queued = []
    with torch.inference_mode(), tqdm(total=sum(len(v) for v in work.values()),
                                      desc="causal ablation", unit="ablation", file=sys.stderr,
                                      mininterval=5) as bar:
        for i in sorted(work):
            tokens = torch.tensor(scan.sentences[i].token_ids, device=device)
            jobs = sorted(work[i], key=lambda a: (a.start, a.feature))
            pending = queue_sentence(bank, resumer, sae, tokens, scan.acts[i], scan.real[i],
                                     jobs, cfg.batch_size, cfg.window)
            queued += [(a.feature, scan.sentences[i].lang, p) for a, p in zip(jobs, pending)]
            bar.update(len(jobs))
        losses = bank.losses()
    for (f, lang, _), (d, b) in zip(queued, read_deltas(losses, [q[2] for q in queued])):
        deltas[(f, lang)].append(d)
        base[(f, lang)].append(b)
    timings["ablation"] = time.perf_counter() - t0
    log.info("ablated %d (sentence, feature) pairs on %d sentences in %.1f s",
             sum(len(v) for v in work.values()), len(work), timings["ablation"])

    t0 = time.perf_counter()
    steer = _steer(model, sae, hook, resumer, features, maxacts, langs, contexts, cfg)
    timings["steering"] = time.perf_counter() - t0

    table = _assemble(features, set(controls), tested, rates, deltas, base, steer, langs, cfg,
                      model.tokenizer, maxacts)
    log.info("causal table: %d rows in %.1f s of steering", table.height, timings["steering"])
    return table


def _steer(model, sae, hook: str, resumer: Resumer, features: Sequence[int],
           maxacts: pl.DataFrame, langs: Sequence[str], contexts: Mapping[str, Sequence[str]],
           cfg: CausalConfig) -> dict[str, object]:
    """Per feature: its words and alpha, and steer_{ctx}_{word} (mean over the contexts)."""
    words = feature_words(maxacts, features, langs, top_pairs=cfg.word_pairs,
                          k=cfg.words_per_lang)
    median = median_activation(maxacts, features)
    alphas = [cfg.alpha * median[f] for f in features]
    ok = [k for k, f in enumerate(features) if np.isfinite(alphas[k])]
    sums = np.zeros((len(features), len(langs), len(langs)))
    counts = np.zeros(len(langs))
    ctx_pairs = pl.DataFrame({"pair_id": list(range(sum(len(v) for v in contexts.values()))),
                              "lang": [lang for lang in langs for _ in contexts[lang]],
                              "text": [t for lang in langs for t in contexts[lang]]})
    sentences = tokenize(model.tokenizer, ctx_pairs, cfg.max_tokens)
    with torch.inference_mode():
        for b in hook_batches(model, hook, sentences, cfg.batch_size, desc="causal contexts"):
            for row, s in enumerate(b.sentences):
                n = len(s.token_ids)
                tokens = torch.tensor(s.token_ids, device=b.acts.device)
                got = steering_deltas(resumer, sae, tokens, b.acts[row, :n].clone(),
                                      [features[k] for k in ok], [alphas[k] for k in ok],
                                      [[words[features[k]][w] for w in langs] for k in ok],
                                      cfg.batch_size) if ok else []
                c = langs.index(s.lang)
                counts[c] += 1
                for k, d in zip(ok, got):
                    sums[k, c] += np.asarray(d)
    steer = np.full_like(sums, np.nan)
    steer[ok] = sums[ok] / counts[None, :, None]
    return {"words": words, "alphas": alphas, "steer": steer}


def _assemble(features: Sequence[int], controls: set[int], tested: Mapping[int, Sequence[str]],
              rates: np.ndarray, deltas, base, steer: Mapping[str, object], langs: Sequence[str],
              cfg: CausalConfig, tokenizer, maxacts) -> pl.DataFrame:
    n = len(features)
    eff = np.full((n, len(langs), 3), np.nan)
    count = np.zeros((n, len(langs)), dtype=np.uint32)
    clean = np.full((n, len(langs)), np.nan)
    for k, f in enumerate(features):
        for j, lang in enumerate(langs):
            d = deltas.get((f, lang), [])
            eff[k, j] = effect_interval(d, cfg.bootstrap, (cfg.seed, f, j))
            count[k, j] = len(d)
            if d:
                clean[k, j] = float(np.mean(base[(f, lang)]))
    is_control = np.array([f in controls for f in features], dtype=bool)
    bars = np.array([control_bar(eff[is_control, j, 0]) for j in range(len(langs))])
    cols: dict[str, object] = {
        "feature_id": pl.Series(features, dtype=pl.UInt32),
        "source": [",".join(tested.get(f, ["control"])) for f in features],
        "is_control": is_control,
        "verdict": [verdict(eff[k, :, 0], bars, langs) for k in range(n)],
        "firing_rate": rates[np.asarray(features, dtype=np.int64)] if n else np.zeros(0),
    }
    for j, lang in enumerate(langs):
        cols[f"effect_{lang}"] = eff[:, j, 0]
        cols[f"effect_{lang}_lo"] = eff[:, j, 1]
        cols[f"effect_{lang}_hi"] = eff[:, j, 2]
        cols[f"n_sentences_{lang}"] = pl.Series(count[:, j], dtype=pl.UInt32)
        cols[f"control_p95_{lang}"] = np.full(n, bars[j])
        cols[f"clean_loss_{lang}"] = clean[:, j]
    cols["alpha"] = np.asarray(steer["alphas"], dtype=np.float64)
    words = steer["words"]
    for lang in langs:
        cols[f"words_{lang}"] = pl.Series(
            [tokenizer.convert_ids_to_tokens(words[f][lang]) for f in features],
            dtype=pl.List(pl.String))
    for c, ctx in enumerate(langs):
        for w, word in enumerate(langs):
            cols[f"steer_{ctx}_{word}"] = steer["steer"][:, c, w]
    return pl.DataFrame(cols).sort("is_control", "feature_id")
