"""Monolinguality nu against a dense numpy computation, and its rank correlation with bi_score."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from polyglot_sae.errors import InputError
from polyglot_sae.score.monolinguality import monolinguality, rank_correlation

LANGS = ["en", "es", "de"]


def _random_table(n_pairs=9, d_sae=14, seed=0):
    """A sparse table and its dense (pairs, langs, features) twin; feature 0 never fires and
    feature 1 fires only in German."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_pairs, len(LANGS), d_sae)) < 0.4,
                     rng.gamma(2.0, 3.0, (n_pairs, len(LANGS), d_sae)), 0.0).astype(np.float32)
    dense[:, :, 0] = 0
    dense[:, :, 1] = 0
    dense[0, 2, 1] = 5.0
    pair, lang, feature = np.nonzero(dense)
    table = pl.DataFrame({
        "pair_id": pair.astype(np.uint32),
        "lang": [LANGS[i] for i in lang],
        "feature_id": feature.astype(np.uint32),
        "value": dense[pair, lang, feature],
    })
    return table.sample(fraction=1.0, shuffle=True, seed=seed), dense.astype(np.float64)


def test_nu_matches_dense_reference():
    table, dense = _random_table()
    n_pairs, _, d_sae = dense.shape
    nu = monolinguality(table, n_pairs=n_pairs, d_sae=d_sae, langs=LANGS)
    assert nu.columns == ["feature_id", "lang", "nu", "nu_max", "nu_lang"]
    assert nu.height == d_sae * len(LANGS)

    expected = np.empty((len(LANGS), d_sae))
    for li in range(len(LANGS)):
        others = [j for j in range(len(LANGS)) if j != li]
        expected[li] = dense[:, li].mean(axis=0) - dense[:, others].reshape(-1, d_sae).mean(axis=0)
    got = nu.pivot(on="lang", index="feature_id", values="nu").sort("feature_id")
    np.testing.assert_allclose(got.select(LANGS).to_numpy().T, expected, atol=1e-12)

    per_feature = nu.unique("feature_id", keep="first").sort("feature_id")
    np.testing.assert_allclose(per_feature["nu_max"].to_numpy(), expected.max(axis=0), atol=1e-12)
    want_lang = [LANGS[i] for i in expected.argmax(axis=0)]
    want_lang[0] = None  # never fires
    assert per_feature["nu_lang"].to_list() == want_lang
    assert want_lang[1] == "de"
    # Silent pairs count: feature 1's single German activation of 5 averages to 5 / n_pairs.
    assert per_feature["nu_max"][1] == pytest.approx(5.0 / n_pairs)


def test_two_languages_are_antisymmetric():
    table, dense = _random_table()
    two = table.filter(pl.col("lang").is_in(["en", "es"]))
    nu = monolinguality(two, n_pairs=dense.shape[0], d_sae=dense.shape[2], langs=["en", "es"])
    wide = nu.pivot(on="lang", index="feature_id", values="nu")
    np.testing.assert_allclose(wide["en"].to_numpy(), -wide["es"].to_numpy(), atol=1e-12)


def test_bad_tables_raise_input_errors():
    table, dense = _random_table()
    n_pairs, _, d_sae = dense.shape
    with pytest.raises(InputError, match="duplicate"):
        monolinguality(pl.concat([table, table.head(1)]), n_pairs=n_pairs, d_sae=d_sae, langs=LANGS)
    with pytest.raises(InputError, match="n_pairs"):
        monolinguality(table, n_pairs=2, d_sae=d_sae, langs=LANGS)
    with pytest.raises(InputError, match="value"):
        monolinguality(table.drop("value"), n_pairs=n_pairs, d_sae=d_sae, langs=LANGS)


def test_rank_correlation_matches_scipy_on_alive_features():
    scores = pl.DataFrame({
        "feature_id": pl.Series([0, 1, 2, 3, 4, 5, 6], dtype=pl.UInt32),
        "bi_score": [0.1, 0.5, None, 0.3, 0.9, 0.2, 7.0],
        "dead": [False, False, True, False, False, False, True],
    })
    nu = pl.DataFrame({
        "feature_id": pl.Series([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6], dtype=pl.UInt32),
        "nu_max": [0.2, 0.2, 0.1, 0.1, 9.0, 9.0, 0.4, 0.4, 0.8, 0.8, 0.3, 0.3, -1.0, -1.0],
    })
    got = rank_correlation(scores, nu)
    want = spearmanr([0.1, 0.5, 0.3, 0.9, 0.2], [0.2, 0.1, 0.4, 0.8, 0.3])
    assert got["n_features"] == 5
    assert got["rho"] == pytest.approx(want.statistic)
    assert got["p_value"] == pytest.approx(want.pvalue)


def test_rank_correlation_degenerate_and_bad_input():
    scores = pl.DataFrame({"feature_id": pl.Series([0, 1], dtype=pl.UInt32),
                           "bi_score": [0.1, 0.2], "dead": [False, False]})
    nu = pl.DataFrame({"feature_id": pl.Series([0, 1], dtype=pl.UInt32), "nu_max": [1.0, 2.0]})
    got = rank_correlation(scores, nu)
    assert got["n_features"] == 2 and np.isnan(got["rho"]) and np.isnan(got["p_value"])
    with pytest.raises(InputError, match="nu_max"):
        rank_correlation(scores, nu.drop("nu_max"))


def test_end_to_end_with_scores():
    from polyglot_sae.score.bilingual import ScoreConfig, score_features

    table, dense = _random_table(n_pairs=30, d_sae=40, seed=3)
    n_pairs, _, d_sae = dense.shape
    scores = score_features(table, n_pairs=n_pairs, d_sae=d_sae, langs=LANGS,
                            config=ScoreConfig(beta_rank=5))
    result = rank_correlation(scores, monolinguality(table, n_pairs=n_pairs, d_sae=d_sae,
                                                     langs=LANGS))
    assert result["n_features"] == scores["rank"].count()
    assert -1 <= result["rho"] <= 1 and 0 <= result["p_value"] <= 1
