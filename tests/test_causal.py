"""The causal check (polyglot_sae.causal): ablation and steering against hand computations on
the full model, exact zeros where a feature is silent, a planted model whose answer is known in
closed form (the verdicts and control selection: test_causal_verdicts.py; the stage end to end:
test_causal_stage.py)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from conftest import make_jumprelu, tiny_gemma
from polyglot_sae.causal.config import CausalConfig
from polyglot_sae.causal.engine import (Ablation, Resumer, ablate, sentence_effects,
                                         steering_deltas)

# ---------------------------------------------------------------- references on the full model


def _encode_by_hand(sae, x):
    """JumpReLU by hand: relu(pre) where pre > threshold, pre = (x - b_dec) W_enc + b_enc."""
    sae_in = x - sae.b_dec if sae.cfg.apply_b_dec_to_input else x
    pre = sae_in @ sae.W_enc + sae.b_enc
    return torch.relu(pre) * (pre > sae.threshold)


def _losses_by_hand(logits, tokens):
    """Next-token cross-entropy at every position but the last: loss[t] predicts tokens[t+1]."""
    logp = torch.log_softmax(logits[0].double(), dim=-1)
    return -logp[:-1].gather(1, tokens[1:, None])[:, 0]


def _reference(model, sae, hook, tokens, feature, start, end):
    """(mean loss increase, mean KL(clean || ablated)) over positions [start, end) with
    f_i(x) W_dec[i] removed at every position but BOS, in a hook on the full model
    (run_with_hooks), from the full log-softmax in float64."""

    def remove(act, hook):  # noqa: ARG001
        f = _encode_by_hand(sae, act[0])[:, feature]
        f[0] = 0.0  # BOS is special: never ablated
        return act - (f[:, None] * sae.W_dec[feature])[None]

    with torch.no_grad():
        clean_logits = model(tokens[None])
        ablated_logits = model.run_with_hooks(tokens[None], fwd_hooks=[(hook, remove)])
    clean = _losses_by_hand(clean_logits, tokens)
    ablated = _losses_by_hand(ablated_logits, tokens)
    lp = torch.log_softmax(clean_logits[0].double(), -1)
    lq = torch.log_softmax(ablated_logits[0].double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    return float((ablated - clean)[start:end].mean()), float(kl[start:end].mean())


def _hook_acts(model, hook, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None], names_filter=hook)
    return cache[hook][0]


def _fires(sae, x):
    f = _encode_by_hand(sae, x)
    f[0] = 0
    return f > 0


def _sentence_with_firings(model, sae, hook, n, seed, most, least):
    """A random sentence of n tokens (BOS special), its hook activations, and an ablation from
    the first firing of each of the first `most` features that fire before its last token."""
    tokens = torch.randint(0, model.cfg.d_vocab, (n,),
                           generator=torch.Generator().manual_seed(seed))
    x = _hook_acts(model, hook, tokens)
    fires = _fires(sae, x)
    fires[-1] = False
    feats = [int(i) for i in torch.nonzero(fires.any(0))[:, 0][:most]]
    assert len(feats) >= least, "the test needs features that fire"
    real = torch.ones(n, dtype=torch.bool)
    real[0] = False
    return tokens, x, real, [Ablation(f, int(torch.nonzero(fires[:, f])[0, 0])) for f in feats]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matrices: a second thread only adds synchronisation (20x slower on a busy
    2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gemma4():
    return tiny_gemma("google/gemma-3-270m")


@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_post", "blocks.2.hook_resid_pre",
                                  "blocks.1.hook_mlp_out"])
def test_ablation_matches_a_hand_hook_on_the_full_model(gemma4, hook, monkeypatch):
    from polyglot_sae.causal import shift

    monkeypatch.setattr(shift, "SHIFT_ROWS", 5)  # the shifts in several parts
    model = gemma4
    sae = make_jumprelu(model.cfg.d_model, 48, seed=3, hook=hook)
    with torch.no_grad():
        sae.threshold.fill_(0.3)
    tokens, x, real, jobs = _sentence_with_firings(model, sae, hook, 24, seed=5, most=7, least=5)
    resumer = Resumer.for_hook(model, hook)
    assert (resumer.start is None) == hook.endswith("mlp_out")
    # top_k = d_vocab: the top set is the whole vocabulary, so the bound is the exact KL
    for window, top_k in ((None, 0), (3, 0), (3, 4), (None, model.cfg.d_vocab)):
        with torch.no_grad():
            got = sentence_effects(resumer, sae, tokens, x, real, jobs, batch_size=3,
                                   window=window, top_k=top_k)
        for a, effect in zip(jobs, got):
            end = tokens.shape[0] - 1 if window is None else min(tokens.shape[0] - 1,
                                                                  a.start + window)
            dce, kl = _reference(model, sae, hook, tokens, a.feature, a.start, end)
            assert effect.positions == end - a.start
            assert abs(kl) > 1e-5 and abs(dce) > 1e-4  # a real change, not a vacuous match
            if top_k == 4:  # the top 4 only: a lower bound of the KL
                assert 0.0 <= effect.kl <= kl * (1 + 1e-4) + 1e-7, (a, window, top_k)
            else:
                assert effect.dce == pytest.approx(dce, abs=1e-5), (a, window)
                assert effect.kl == pytest.approx(kl, abs=1e-6, rel=1e-4), (a, window)


def test_ablations_of_many_sentences_share_window_passes(gemma4, monkeypatch):
    """Three sentences of different lengths, two to a clean run (batch_size 2), their windows
    through the blocks 7 positions at a time (WINDOW_ROWS, so passes mix sentences and split
    one sentence's copies): every effect equals the hand hook on its own sentence."""
    from polyglot_sae.causal import engine

    monkeypatch.setattr(engine, "WINDOW_ROWS", 7)
    hook = "blocks.1.hook_resid_post"
    model = gemma4
    sae = make_jumprelu(model.cfg.d_model, 48, seed=3, hook=hook)
    with torch.no_grad():
        sae.threshold.fill_(0.3)
    items, expected = [], []
    for seed, n in ((7, 21), (8, 12), (9, 17)):
        tokens, x, real, jobs = _sentence_with_firings(model, sae, hook, n, seed, most=4, least=3)
        items.append((tokens, x, real, jobs))
        expected.append([_reference(model, sae, hook, tokens, a.feature, a.start,
                                    min(n - 1, a.start + 3)) for a in jobs])
    with torch.no_grad():
        got = engine.effects(Resumer.for_hook(model, hook), sae, items, batch_size=2, window=3)
    for want, have in zip(expected, got):
        assert len(have) == len(want)
        for (dce, kl), effect in zip(want, have):
            assert abs(kl) > 1e-5
            assert effect.dce == pytest.approx(dce, abs=1e-5)
            assert effect.kl == pytest.approx(kl, abs=1e-6, rel=1e-4)


def test_a_silent_feature_changes_nothing_exactly(gemma4):
    hook = "blocks.1.hook_resid_post"
    model = gemma4
    sae = make_jumprelu(model.cfg.d_model, 16, seed=4, hook=hook)
    with torch.no_grad():
        sae.threshold.fill_(0.3)
        sae.b_enc[5] = -1e4  # feature 5 never fires
    tokens = torch.randint(0, model.cfg.d_vocab, (20,), generator=torch.Generator().manual_seed(6))
    x = _hook_acts(model, hook, tokens)
    real = torch.ones(20, dtype=torch.bool)
    assert not _fires(sae, x)[:, 5].any()
    assert torch.equal(ablate(sae, x, 5, real), x)
    firing = int(torch.nonzero(_fires(sae, x)[:-1].any(0))[0, 0])
    jobs = [Ablation(5, 1), Ablation(firing, 1), Ablation(5, 4)]
    for top_k in (0, 8):
        with torch.no_grad():
            got = sentence_effects(Resumer.for_hook(model, hook), sae, tokens, x, real, jobs,
                                   batch_size=8, window=4, top_k=top_k)
        assert got[0].kl == got[0].dce == 0.0 and got[2].kl == got[2].dce == 0.0
        assert got[1].kl > 0.0 and got[1].dce != 0.0


def test_steering_matches_a_hand_hook_on_the_full_model(gemma4):
    """Two contexts of different lengths, three features two to a batch (batch_size 3): their
    rows share unembedding blocks, each delta equals the hand hook on its own context."""
    hook = "blocks.1.hook_resid_post"
    model = gemma4
    sae = make_jumprelu(model.cfg.d_model, 16, seed=5, hook=hook)
    contexts = [torch.randint(0, model.cfg.d_vocab, (n,),
                              generator=torch.Generator().manual_seed(7 + n)) for n in (7, 4)]
    features, alphas = [2, 9, 11], [3.0, 0.5, 8.0]
    words = [[[1, 4, 9], [20]], [[], [3, 3, 30]], [[49], [0, 1]]]
    with torch.no_grad():
        got = steering_deltas(Resumer.for_hook(model, hook), sae,
                              [(t, _hook_acts(model, hook, t)) for t in contexts], features,
                              alphas, words, batch_size=3)
        assert len(got) == len(contexts)
        for tokens, per_feature in zip(contexts, got):
            clean = torch.log_softmax(model(tokens[None])[0, -1].double(), -1)
            for k, f in enumerate(features):
                def add(act, hook, k=k, f=f):  # noqa: ARG001
                    act = act.clone()
                    act[:, -1] += alphas[k] * sae.W_dec[f]
                    return act

                steered = torch.log_softmax(model.run_with_hooks(
                    tokens[None], fwd_hooks=[(hook, add)])[0, -1].double(), -1)
                for w, ids in enumerate(words[k]):
                    if not ids:
                        assert math.isnan(per_feature[k][w])
                        continue
                    idx = torch.tensor(ids)
                    want = float(torch.logsumexp(steered[idx], 0)
                                 - torch.logsumexp(clean[idx], 0))
                    assert per_feature[k][w] == pytest.approx(want, abs=1e-5)
                    assert abs(want) > 1e-4


# ------------------------------------------------------------- a planted model, known answers


def _planted(tokenizer, s: float = 4.0, c: float = 5.0):
    """A 2-layer model whose blocks do nothing (zero weights): the residual stream is s times
    the one-hot of the current token, and the unembedding gives the next letter of a cycle
    (a..m for "en", n..z for "es") a logit of s*c = 20, every other token 0."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    V = len(tokenizer)
    cfg = HookedTransformerConfig(n_layers=2, d_model=V, n_heads=1, d_head=4, d_mlp=4,
                                  d_vocab=V, n_ctx=64, act_fn="relu", normalization_type=None,
                                  positional_embedding_type="standard", seed=0)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    ids = {ch: tokenizer.convert_tokens_to_ids(ch) for ch in "abcdefghijklmnopqrstuvwxyz"}
    cycle_a, cycle_b = "abcdefghijklm", "nopqrstuvwxyz"
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E.copy_(s * torch.eye(V))
        for cycle in (cycle_a, cycle_b):
            for k, ch in enumerate(cycle):
                model.unembed.W_U[ids[ch], ids[cycle[(k + 1) % len(cycle)]]] = c
    return model.eval(), ids, cycle_a, cycle_b


def _walk(cycle: str, start: int, n: int) -> str:
    return "".join(cycle[(start + k) % len(cycle)] for k in range(n))


def _planted_kl(V: int, silenced: int) -> float:
    """KL(clean || ablated) when the answer's logit falls from 20 to 0 and `silenced` other
    tokens' from 0 to -20 (every other token stays at 0)."""
    log_zp = math.log(math.exp(20) + V - 1)
    log_zq = math.log(V - silenced + silenced * math.exp(-20))
    return 20 * (math.exp(20) + silenced) / math.exp(log_zp) + log_zq - log_zp


def test_planted_features_get_the_verdicts_and_effects_known_in_closed_form(tiny_model_dir):
    """Feature 0's decoder is s times the sum of the "en" letters' directions, feature 1's of
    every letter's; both (and 40 random controls) fire with value 1 everywhere. Removing
    feature 0 at an en letter t leaves t's direction at 0 and pushes the other 12 en letters'
    successors to -20: the true next token then ties with V - 13 others at 0, so the loss goes
    from ~0 to log(V - 12) and the KL is ``_planted_kl(V, 12)``; on es sentences it only lowers
    logits that were not the answer (effects ~0). Feature 1 does the same in both languages
    (25 tokens silenced). The controls, as large but in random directions, move the answer's
    logit by a few nats at most: 0 is significant in en only, 1 in both."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from transformers import PreTrainedTokenizerFast

    from polyglot_sae.causal.run import causal_table

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_model_dir)
    model, ids, cycle_a, cycle_b = _planted(tokenizer)
    V, s, hook, d = len(tokenizer), 4.0, "blocks.0.hook_resid_post", 42
    cfg = JumpReLUSAEConfig(d_in=V, d_sae=d)
    cfg.metadata.hook_name = hook
    sae = JumpReLUSAE(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(1.0)
        sae.threshold.fill_(0.5)
        sae.b_dec.zero_()
        # controls of about the same magnitude, in random directions: they move the answer's
        # logit by a few nats, which (from 20) leaves the distribution nearly where it was
        sae.W_dec.copy_(0.5 * torch.randn(d, V, generator=gen))
        sae.W_dec[0] = 0.0
        sae.W_dec[1] = 0.0
        for ch in cycle_a:
            sae.W_dec[0, ids[ch]] = s
        for ch in cycle_a + cycle_b:
            sae.W_dec[1, ids[ch]] = s
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        n = int(rng.integers(5, 10))
        rows += [(i, "en", _walk(cycle_a, int(rng.integers(13)), n)),
                 (i, "es", _walk(cycle_b, int(rng.integers(13)), n))]
    pool = pl.DataFrame(rows, schema={"pair_id": pl.UInt32, "lang": pl.String,
                                      "text": pl.String}, orient="row")
    maxacts = pl.DataFrame({
        "pair_id": np.repeat(np.arange(100, 110), 2 * d).astype(np.uint32),
        "lang": np.tile(np.repeat(["en", "es"], d), 10),
        "feature_id": np.tile(np.arange(d), 20).astype(np.uint32),
        "value": np.ones(20 * d, dtype=np.float32),
        "token_id": np.tile(np.repeat([ids["c"], ids["p"]], d), 10).astype(np.uint32)})
    config = CausalConfig(pairs_per_lang=8, control_sentences=4, controls=40, bootstrap=50,
                          batch_size=4, dictionary_sentences=3,
                          contexts={"en": ["abc", "hij"], "es": ["nop", "uvw"]})
    with torch.no_grad():
        table, dictionary = causal_table(model, sae, hook, pool,
                                          {0: ["planted:en"], 1: ["planted:both"]}, maxacts,
                                          ["en", "es"], config, n_scored_pairs=10)
    rows = {r["feature_id"]: r for r in table.iter_rows(named=True)}
    assert sorted(rows) == list(range(d))
    assert [r["is_control"] for r in table.iter_rows(named=True)] == [False] * 2 + [True] * 40
    f0, f1 = rows[0], rows[1]
    assert f0["n_sentences_en"] == f0["n_sentences_es"] == 8 and rows[7]["n_sentences_en"] == 4
    assert f0["effect_en"] == pytest.approx(math.log(V - 12), rel=1e-4)
    assert f0["effect_en_lo"] == pytest.approx(math.log(V - 12), rel=1e-4)
    assert f0["kl_en"] == pytest.approx(_planted_kl(V, 12), rel=1e-4)
    assert f0["kl_en_lo"] <= f0["kl_en"] <= f0["kl_en_hi"]
    assert -1e-4 < f0["effect_es"] <= 1e-5 and 0 <= f0["kl_es"] < 1e-5
    assert f1["effect_en"] == pytest.approx(math.log(V - 25), rel=1e-4)
    assert f1["effect_es"] == pytest.approx(math.log(V - 25), rel=1e-4)
    assert f1["kl_es"] == pytest.approx(_planted_kl(V, 25), rel=1e-4)
    assert f0["p_en"] == pytest.approx(1 / 41) and f0["p_es"] > 0.5
    assert f0["verdict"] == "one:en" and f1["verdict"] == "both"
    assert f0["source"] == "planted:en" and rows[5]["source"] == "control"
    assert f0["words_en"] == ["c"] and f0["words_es"] == ["p"]
    assert f0["alpha"] == pytest.approx(4.0) and math.isnan(rows[5]["alpha"])
    # the whole dictionary: exact ablation on 3 sentences, so the same closed forms
    est = {r["feature_id"]: r for r in dictionary.iter_rows(named=True)}
    assert est[0]["n_dict_en"] == est[1]["n_dict_es"] == 3
    assert est[0]["kl_en"] == pytest.approx(_planted_kl(V, 12), rel=1e-4)
    assert 0 <= est[0]["kl_es"] < 1e-5
    assert est[1]["kl_es"] == pytest.approx(_planted_kl(V, 25), rel=1e-4)
    # Steering feature 0 adds alpha * s * c = 80 to the logit of every en letter. After an en
    # context the answer (the next en letter) rises with them: P("c") stays where it was.
    # After an es context the answer (logit 20) does not: log P("c") goes from 0 - lse_clean
    # to 80 - lse_steered, and log P("p") from 0 - lse_clean to 0 - lse_steered.
    lse_clean = math.log(math.exp(20) + V - 1)
    lse_steered = math.log(13 * math.exp(80) + math.exp(20) + V - 14)
    assert f0["steer_en_en"] == pytest.approx(0.0, abs=1e-3)
    assert f0["steer_es_en"] == pytest.approx(80 - lse_steered + lse_clean, rel=1e-4)
    assert f0["steer_es_en"] > 17
    assert f0["steer_en_es"] == pytest.approx(-80.0, rel=1e-4)
    assert f0["steer_es_es"] == pytest.approx(lse_clean - lse_steered, rel=1e-4)
