"""The causal check's statistics and selection (polyglot_sae.causal.verdict, .select): the
verdict rule, p- and q-values, intervals, the group test against hand computations and closed
forms, controls and the features under test, the clean rows' softmax against numpy."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from polyglot_sae.causal.select import control_features, feature_words, features_under_test
from polyglot_sae.causal.verdict import control_bar, effect_interval, headline, verdict
from polyglot_sae.errors import InputError


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
