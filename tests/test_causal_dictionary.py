"""The whole dictionary's bookkeeping: which sentences, the table, its validation against the
verdicts' disjoint sentences, and the class medians, against hand computations."""

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from polyglot_sae.activations.extract import Sentence
from polyglot_sae.causal.dictionary import class_medians, dictionary_table, headline, validation
from polyglot_sae.causal.engine import Effect
from polyglot_sae.causal.run import _Scan


def _effect(kl: float) -> Effect:
    return Effect(kl=kl, dce=2 * kl, clean=1.0, positions=3)


def test_pool_order_takes_the_first_sentences_pairs_firing_in_both_first():
    scan = object.__new__(_Scan)
    # pool order: pairs 7, 3, 9, 5 (two sentences each)
    scan.sentences = [Sentence(pair_id=p, lang=lang, token_ids=[1, 2, 3])
                      for p in (7, 3, 9, 5) for lang in ("en", "es")]
    fires = {(7, "en"), (3, "en"), (3, "es"), (9, "en"), (9, "es"), (5, "es")}
    scan.first = np.array([[1 if (s.pair_id, s.lang) in fires else -1]
                           for s in scan.sentences], dtype=np.int32)
    got = scan.chosen(0, ["en", "es"], 2, None)
    # pairs 3 and 9 fire in both (pool order 3 then 9), then 7 (en) or 5 (es)
    assert got == {"en": [2, 4], "es": [3, 5]}
    assert scan.chosen(0, ["en", "es"], 3, None) == {"en": [2, 4, 0], "es": [3, 5, 7]}
    drawn = scan.chosen(0, ["en", "es"], 3, 11)  # a seeded draw: shared pairs still first
    assert sorted(drawn["en"][:2]) == [2, 4] and drawn["en"][2] == 0


def _fixture():
    """Six features, one language; sentences 0..9. The dictionary takes sentences 0 and 1 of
    each; the verdicts' sentences overlap them for features 0 and 1, and there the effects are
    huge (they would flip the ranking if the overlap were not left out)."""
    d_sae, rng = 6, np.random.default_rng(1)
    level = [0.5, 0.1, 0.3, 0.2, 0.4, 0.6]
    effects = {(f, i): _effect(level[f] * (1 + 0.1 * rng.random())) for f in range(d_sae)
               for i in range(10)}
    effects[(0, 1)] = effects[(1, 1)] = _effect(100.0)
    dict_sentences = {f: {"en": [0, 1]} for f in range(5)}  # feature 5 alive, never fired
    verdict = {0: {"en": [1, 2, 3, 4, 5]}, 1: {"en": [1, 6, 7, 8, 9]},
               2: {"en": [2, 3, 4, 5]}, 3: {"en": [6, 7, 8, 9]}, 4: {"en": [2, 3, 4]}}
    alive = np.ones(d_sae, dtype=bool)
    rates = np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.3])
    magnitude = np.array([1.0, 2.0, 4.0, 8.0, 3.0, 5.0])
    table = dictionary_table(effects, dict_sentences, ["en"], alive, rates, magnitude)
    return effects, dict_sentences, verdict, table


def test_table_and_validation_by_hand():
    effects, dict_sentences, verdict, table = _fixture()
    rows = {r["feature_id"]: r for r in table.iter_rows(named=True)}
    assert rows[0]["kl_en"] == pytest.approx((effects[(0, 0)].kl + 100.0) / 2)
    assert rows[3]["dce_en"] == pytest.approx(effects[(3, 0)].kl + effects[(3, 1)].kl)
    assert rows[0]["n_dict_en"] == 2 and rows[5]["n_dict_en"] == 0
    assert rows[5]["kl_en"] is None and rows[5]["residual_en"] is None
    checks = validation(table, effects, verdict, dict_sentences, ["en"])["en"]
    # feature 4 has 3 verdict sentences (< 4); features 0, 1 lose sentence 1
    ref_x = [rows[f]["kl_en"] for f in (0, 1, 2, 3)]
    ref_y = [np.mean([effects[(0, i)].kl for i in (2, 3, 4, 5)]),
             np.mean([effects[(1, i)].kl for i in (6, 7, 8, 9)]),
             np.mean([effects[(2, i)].kl for i in (2, 3, 4, 5)]),
             np.mean([effects[(3, i)].kl for i in (6, 7, 8, 9)])]
    assert checks["features"] == 4
    assert checks["spearman"] == pytest.approx(stats.spearmanr(ref_x, ref_y).statistic)
    half = 1.96 * math.sqrt(1.06 / 1)
    z = math.atanh(checks["spearman"])
    assert checks["lo"] == pytest.approx(math.tanh(z - half))
    assert checks["hi"] == pytest.approx(math.tanh(z + half))


def test_class_medians_and_residuals_by_hand():
    effects, dict_sentences, verdict, table = _fixture()
    scores = pl.DataFrame({"feature_id": np.arange(6, dtype=np.uint32),
                           "class": ["concept", "concept", "weak", "weak", "weak", "dead"]})
    medians = {r["class"]: r for r in class_medians(table, scores, ["en"]).iter_rows(named=True)}
    kl = table["kl_en"].to_list()
    assert set(medians) == {"concept", "weak"}  # feature 5 is not measured
    assert medians["weak"]["features"] == 3
    assert medians["weak"]["kl_en"] == pytest.approx(float(np.median(kl[2:5])))
    # under MIN_FIT (10) measured features the residual is log KL itself
    y = np.log(np.array(kl[:5]))
    assert medians["concept"]["residual_en"] == pytest.approx(float(np.median(y[:2])))
    line = headline(table, scores, ["en"])
    assert line.startswith("Whole dictionary (exact ablation") and "concept (2)" in line


def test_residuals_are_the_least_squares_fit_over_every_measured_feature():
    """log KL = 0.5 + 1.5 log magnitude - 0.3 log rate + noise over 40 features: the table's
    residual is log KL minus numpy's least-squares fit (an independent solver)."""
    rng = np.random.default_rng(3)
    d_sae = 40
    rates, magnitude = rng.uniform(0.01, 0.5, d_sae), rng.uniform(0.5, 20, d_sae)
    log_kl = 0.5 + 1.5 * np.log(magnitude) - 0.3 * np.log(rates) + rng.normal(0, 0.2, d_sae)
    effects = {(f, 0): _effect(float(np.exp(log_kl[f]))) for f in range(d_sae)}
    alive = np.ones(d_sae, dtype=bool)
    alive[0] = False  # not alive: measured but outside the fit, its residual still given
    table = dictionary_table(effects, {f: {"en": [0]} for f in range(d_sae)}, ["en"], alive,
                             rates, magnitude)
    x = np.column_stack([np.ones(d_sae), np.log(rates), np.log(magnitude)])
    beta = np.linalg.lstsq(x[1:], log_kl[1:], rcond=None)[0]
    assert beta[2] == pytest.approx(1.5, abs=0.2)
    clipped = np.clip(x, x[1:].min(0), x[1:].max(0))
    np.testing.assert_allclose(table["residual_en"].to_numpy(), log_kl - clipped @ beta,
                               atol=1e-9)
