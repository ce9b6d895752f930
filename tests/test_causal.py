"""The causal check (polyglot_sae.causal): ablation and steering against hand computations on
the full model, exact zeros where a feature is silent, a planted model whose answer is known in
closed form, the verdict rule, p- and q-values against hand computations (the stage end to end:
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
from polyglot_sae.causal.select import control_features, feature_words, features_under_test
from polyglot_sae.causal.verdict import control_bar, effect_interval, headline, verdict
from polyglot_sae.errors import InputError

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
    tokens = torch.randint(0, model.cfg.d_vocab, (24,), generator=torch.Generator().manual_seed(5))
    x = _hook_acts(model, hook, tokens)
    fires = _fires(sae, x)
    fires[-1] = False
    feats = [int(i) for i in torch.nonzero(fires.any(0))[:, 0][:7]]
    assert len(feats) >= 5, "the test needs features that fire"
    jobs = [Ablation(f, int(torch.nonzero(fires[:, f])[0, 0])) for f in feats]
    real = torch.ones(tokens.shape[0], dtype=torch.bool)
    real[0] = False
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
    hook = "blocks.1.hook_resid_post"
    model = gemma4
    sae = make_jumprelu(model.cfg.d_model, 16, seed=5, hook=hook)
    tokens = torch.randint(0, model.cfg.d_vocab, (7,), generator=torch.Generator().manual_seed(7))
    x = _hook_acts(model, hook, tokens)
    features, alphas = [2, 9, 11], [3.0, 0.5, 8.0]
    words = [[[1, 4, 9], [20]], [[], [3, 3, 30]], [[49], [0, 1]]]
    with torch.no_grad():
        got = steering_deltas(Resumer.for_hook(model, hook), sae, tokens, x, features, alphas,
                              words, batch_size=3)
        clean = torch.log_softmax(model(tokens[None])[0, -1].double(), -1)
        for k, f in enumerate(features):
            def add(act, hook, k=k, f=f):  # noqa: ARG001
                act = act.clone()
                act[:, -1] += alphas[k] * sae.W_dec[f]
                return act

            steered = torch.log_softmax(
                model.run_with_hooks(tokens[None], fwd_hooks=[(hook, add)])[0, -1].double(), -1)
            for w, ids in enumerate(words[k]):
                if not ids:
                    assert math.isnan(got[k][w])
                    continue
                idx = torch.tensor(ids)
                want = float(torch.logsumexp(steered[idx], 0) - torch.logsumexp(clean[idx], 0))
                assert got[k][w] == pytest.approx(want, abs=1e-5)
                assert abs(want) > 1e-4


# ------------------------------------------------------------------------- verdicts, selection


def test_verdict_rule():
    langs = ["en", "es"]
    assert verdict([0.01, 0.04], [0.5, 0.4], langs) == "both"
    assert verdict([0.01, 0.2], [0.5, 0.4], langs) == "one:en"
    assert verdict([0.3, 0.001], [0.5, 0.4], langs) == "one:es"
    assert verdict([0.2, 0.05], [0.5, 0.4], langs) == "neither"  # q < fdr, strictly
    assert verdict([0.2, 0.05], [0.5, 0.4], langs, fdr=0.1) == "one:es"
    assert verdict([np.nan, np.nan], [np.nan, np.nan], langs) == "untested"
    assert verdict([0.01, np.nan], [0.5, np.nan], langs) == "one:en"  # es never measured
    three = ["en", "es", "fr"]
    assert verdict([0.01, 0.01, 0.01], [0.4, 0.3, 0.25], three) == "both"
    assert verdict([0.01, 0.01, 0.3], [0.4, 0.3, 0.25], three) == "one:en"  # ties: larger effect
    assert verdict([0.02, 0.01, 0.3], [0.4, 0.3, 0.25], three) == "one:es"  # smallest q first


def test_p_values_and_bh_against_hand_computations():
    """p-values: rank of the tested residual among the controls' after a log-linear fit done
    here with numpy's polyfit-free normal equations; q-values: Benjamini-Hochberg by its
    definition (min over j >= i of p_(j) m / j)."""
    from polyglot_sae.causal.verdict import bh, p_values

    rng = np.random.default_rng(4)
    n_ctrl, n_test = 60, 8
    cov = rng.normal(size=(n_ctrl + n_test, 2))
    stat = np.exp(0.5 + cov @ [0.8, -0.3] + rng.normal(0, 0.5, n_ctrl + n_test))
    stat[n_ctrl:n_ctrl + 3] *= 50  # three planted effects
    stat[-1] = np.nan  # one never measured
    is_control = np.arange(n_ctrl + n_test) < n_ctrl
    got = p_values(stat, cov, is_control)
    X = np.column_stack([np.ones(n_ctrl), cov[:n_ctrl]])
    beta = np.linalg.solve(X.T @ X, X.T @ np.log(stat[:n_ctrl]))
    lo, hi = cov[:n_ctrl].min(0), cov[:n_ctrl].max(0)
    resid_c = np.log(stat[:n_ctrl]) - X @ beta
    for i in range(n_ctrl, n_ctrl + n_test - 1):
        r = np.log(stat[i]) - np.r_[1.0, np.clip(cov[i], lo, hi)] @ beta
        assert got[i] == pytest.approx((1 + (resid_c >= r).sum()) / (1 + n_ctrl))
    assert np.isnan(got[:n_ctrl]).all() and np.isnan(got[-1])
    assert (got[n_ctrl:n_ctrl + 3] == 1 / 61).all()
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5, 0.001])
    q = bh(p)
    finite = p[~np.isnan(p)]
    m = finite.size
    for i, pi in enumerate(p):
        if np.isnan(pi):
            assert np.isnan(q[i])
            continue
        want = min(min(1.0, pj * m / (np.sum(finite <= pj))) for pj in finite if pj >= pi)
        assert q[i] == pytest.approx(want)


def test_effect_interval_and_control_bar():
    d = np.random.default_rng(0).normal(1.0, 1.0, 40)
    mean, lo, hi = effect_interval(d, 2000, (0, 1, 0))
    assert mean == pytest.approx(d.mean())
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert lo == pytest.approx(mean - 1.96 * se, abs=0.1 * se * 4)
    assert hi == pytest.approx(mean + 1.96 * se, abs=0.1 * se * 4)
    assert effect_interval(d, 200, (0, 1, 0)) == effect_interval(d, 200, (0, 1, 0))
    assert all(math.isnan(v) for v in effect_interval([], 200, (0,)))
    assert control_bar(np.array([np.nan, *range(21)])) == pytest.approx(19.0)
    assert math.isnan(control_bar(np.array([np.nan])))


def test_features_under_test_and_controls():
    paired = pl.DataFrame({"feature_id": range(8), "dead": [False] * 7 + [True],
                           "rank": [2, 0, None, 1, None, 3, None, None],
                           "rho_lo": [0.5, 0.9, 0.0, 0.6, 0.1, 0.2, 0.3, None],
                           "class": ["concept", "concept", "lang_specific:en", "shared_string",
                                     "weak", "length", "lang_specific:en", "dead"]},
                          schema_overrides={"rank": pl.UInt32, "feature_id": pl.UInt32})
    seed = pl.DataFrame({"feature_id": range(8), "rank": [None, 4, 3, 2, 1, 0, None, None]},
                        schema_overrides={"rank": pl.UInt32})
    got = features_under_test({"paired": paired, "seed": seed}, top_n=2, class_top_n=2,
                              extra=[7], d_sae=8)
    assert got[1] == ["paired:top2", "paired:concept"]
    assert got[3] == ["paired:top2", "paired:shared_string"]
    assert got[5] == ["seed:top2", "paired:length"]
    assert got[4] == ["seed:top2"]
    assert got[6] == ["paired:lang_specific:en"] and got[2] == ["paired:lang_specific:en"]
    assert got[0] == ["paired:concept"] and got[7] == ["config"]
    assert set(features_under_test({"seed": seed}, top_n=2, class_top_n=2, extra=[],
                                   d_sae=8)) == {4, 5}
    with pytest.raises(InputError, match="causal.features"):
        features_under_test({"seed": seed}, top_n=2, class_top_n=0, extra=[8], d_sae=8)

    rates = np.array([1e-3, 1e-3, 0.5, 0.01, 0.02, 0.4, 0.6, 1e-3, 0.9])
    magnitude = np.array([1.0, 1.0, 5.0, 1.0, 1.0, 5.0, 0.5, 9.0, 5.0])
    candidates = np.array([False, True, False, True, True, True, True, True, True])
    ctrl = control_features(rates, magnitude, candidates, [0, 2], 2)
    assert ctrl == [1, 5]  # nearest to the rare small target 0 and to the frequent large 2
    # on rate alone 6 (0.6) would be nearer to 2 (0.5) than 5 (0.4); its magnitude is not
    assert control_features(rates, np.ones(9), candidates, [0, 2], 2) == [1, 6]
    assert len(control_features(rates, magnitude, candidates, [0, 2], 20)) == candidates.sum()


def test_clean_rows_match_a_float64_softmax():
    """The clean rows' top tokens, their log-probabilities and the target's, over more rows than
    one block (the reused block's partial second use), against numpy's float64 log-softmax;
    a near-certain answer (1 - p ~ 1e-7) keeps its log to 1e-7."""
    from types import SimpleNamespace

    from polyglot_sae.causal import shift

    rng = np.random.default_rng(0)
    d, vocab, n, k = 8, 300, shift.BLOCK + 3, 5
    W_U = rng.normal(size=(d, vocab)).astype(np.float32)
    b_U = rng.normal(size=vocab).astype(np.float32)
    resid = rng.normal(size=(n, d)).astype(np.float32)
    W_U[0] = 0.0  # the first direction moves token 7's logit only
    W_U[0, 7] = 1.0
    resid[1] = 0.0
    resid[1, 0] = 22.0 - b_U[7]  # token 7 about 22 nats ahead of the rest
    targets = rng.integers(0, vocab, n)
    targets[1] = 7
    model = SimpleNamespace(W_U=torch.from_numpy(W_U), b_U=torch.from_numpy(b_U),
                            cfg=SimpleNamespace(output_logits_soft_cap=-1.0,
                                                normalization_type=None))
    got = shift.clean_rows(model, torch.from_numpy(resid), torch.from_numpy(targets), k,
                           shift.Unembedding(model))
    logits = resid.astype(np.float64) @ W_U.astype(np.float64) + b_U
    ref = logits - logits.max(1, keepdims=True)
    ref = ref - np.log(np.exp(ref).sum(1, keepdims=True))
    top = np.argsort(-ref, axis=1)[:, :k]
    assert np.array_equal(np.sort(got.top_ids.numpy(), 1), np.sort(top, 1))
    np.testing.assert_allclose(got.top_logp.numpy(), np.take_along_axis(ref, got.top_ids.numpy(),
                                                                         1), atol=2e-6)
    target = ref[np.arange(n), targets]
    np.testing.assert_allclose(got.logp_target.numpy(), target, atol=2e-6)
    assert -1e-5 < target[1] < -1e-8  # the planted answer is near-certain
    assert abs(got.logp_target[1].item() - target[1]) < 1e-7


def test_feature_words_are_the_most_frequent_tokens_at_the_top_pairs():
    maxacts = pl.DataFrame({
        "pair_id": [0, 1, 2, 3, 0, 1, 2, 0], "lang": ["en"] * 4 + ["es"] * 3 + ["en"],
        "feature_id": [1, 1, 1, 1, 1, 1, 1, 2], "value": [5.0, 4.0, 3.0, 0.1, 1.0, 2.0, 3.0, 1.0],
        "token_id": [10, 11, 10, 12, 20, 21, 21, 30]})
    words = feature_words(maxacts, [1, 2, 3], ["en", "es"], top_pairs=3, k=2)
    assert words[1] == {"en": [10, 11], "es": [21, 20]}
    assert words[2] == {"en": [30], "es": []} and words[3] == {"en": [], "es": []}


def test_headline_counts_each_methods_top_list():
    table = pl.DataFrame({
        "source": ["paired:top3,seed:top3", "paired:top3", "paired:top3,paired:concept",
                   "seed:top3", "seed:top3", "control"],
        "is_control": [False] * 5 + [True],
        "verdict": ["both", "one:es", "neither", "untested", "both", "both"]})
    assert headline(table) == ("Causal check: paired top 3 — 1 both, 1 one-language, 1 neither; "
                               "seed top 3 — 2 both, 0 one-language, 0 neither, 1 untested.")


def test_group_test_against_closed_forms():
    """A top list wholly above the controls: the medians by hand, the one-sided Mann-Whitney
    p-value of complete separation 1 / C(n + m, n) (exact, no ties), a bootstrap interval
    around the difference; the headline's group sentence from the table's residuals."""
    from polyglot_sae.causal.verdict import group_test

    tested = np.array([2.0, 3.0, 5.0, np.nan])
    controls = np.array([-1.0, 0.0, 0.5, 1.0, 1.5])
    g = group_test(tested, controls)
    assert (g["n"], g["median"], g["control_median"], g["diff"]) == (3, 3.0, 0.5, 2.5)
    assert g["p"] == pytest.approx(1 / math.comb(8, 3))
    assert g["lo"] <= 2.5 <= g["hi"] and g["lo"] > 0
    flipped = group_test(controls[:3], tested[:3])  # below the controls: no evidence
    assert flipped["diff"] < 0 and flipped["p"] > 0.9
    assert math.isnan(group_test(np.array([np.nan]), controls)["p"])
    table = pl.DataFrame({"source": ["paired:top3"] * 3 + ["control"] * 5,
                          "is_control": [False] * 3 + [True] * 5,
                          "verdict": ["neither"] * 3 + ["neither"] * 5,
                          "residual_en": [2.0, 3.0, 5.0, -1.0, 0.0, 0.5, 1.0, 1.5]})
    line = headline(table)
    assert "paired top 3: en +3.00 vs +0.50 (difference +2.50 [" in line
    assert f"p {1 / math.comb(8, 3):.2g})" in line


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
