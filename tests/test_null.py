"""Tests of polyglot_sae.score.null: calibration and power on synthetic tables, equality with a
brute-force null that permutes the polars table and rescores it, BH against scipy, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import false_discovery_control, kstest, kstwo

from polyglot_sae.stats import bh_qvalues
from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.score.null import (NullConfig, _pair_term, permutation_pvalues,
                               permutation_stream, score_with_null)
from polyglot_sae.score.bilingual import ScoreConfig, pair_divergence, score_features

CLI = str(Path(sys.executable).with_name("polyglot-sae"))
EXACT = ScoreConfig(method="exact")
SEED = ScoreConfig(method="seed")


def _frame(lang: str, fire: np.ndarray, value: np.ndarray, ids: np.ndarray) -> pl.DataFrame:
    pair, feature = np.nonzero(fire)
    return pl.DataFrame(
        {"pair_id": ids[pair].astype(np.uint32), "lang": [lang] * pair.size,
         "feature_id": feature.astype(np.uint32), "value": value[pair, feature].astype(np.float32)},
        schema={"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32,
                "value": pl.Float32},
    )


def synthetic(seed: int, *, n_pairs: int, d_sae: int, langs=("en", "es"), n_planted: int = 0,
              n_dead: int = 2) -> tuple[pl.DataFrame, np.ndarray]:
    """Pairs drawn i.i.d. (so re-pairing is exact under the null). Null features fire in each
    language independently, with their own density (0.2-0.8: dense enough that ties, which
    make p conservative, are rare) and gamma magnitudes; the first n_planted features fire on
    nearly the same pairs in every language with correlated magnitudes; the last n_dead fire
    in the first language only. Pair ids are spread out (not 0..n-1)."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10 * n_pairs, n_pairs, replace=False))
    shared_fire = rng.random((n_pairs, d_sae)) < rng.uniform(0.2, 0.8, d_sae)
    shared_value = rng.gamma(rng.uniform(0.5, 3, d_sae), rng.lognormal(0, 0.7, d_sae),
                             (n_pairs, d_sae))
    planted = np.arange(d_sae) < n_planted
    frames = []
    for i, lang in enumerate(langs):
        fire = rng.random((n_pairs, d_sae)) < rng.uniform(0.2, 0.8, d_sae)
        value = rng.gamma(rng.uniform(0.5, 3, d_sae), rng.lognormal(0, 0.7, d_sae),
                          (n_pairs, d_sae))
        flip = rng.random((n_pairs, d_sae)) < 0.05
        fire[:, planted] = (shared_fire ^ flip)[:, planted]
        value[:, planted] = (shared_value * rng.lognormal(0, 0.2, (n_pairs, d_sae)))[:, planted]
        if i > 0:
            fire[:, d_sae - n_dead:] = False
        frames.append(_frame(lang, fire, np.maximum(value, 1e-3), ids))
    return pl.concat(frames), planted


def run(table, n_pairs, d_sae, *, langs=("en", "es"), config=EXACT, **null) -> pl.DataFrame:
    return permutation_pvalues(table, n_pairs=n_pairs, d_sae=d_sae, langs=langs,
                               score_config=config, null_config=NullConfig(**null))


@pytest.mark.parametrize("config", [EXACT, SEED], ids=["exact", "seed"])
def test_null_features_get_uniform_p_values(config):
    table, _ = synthetic(1, n_pairs=300, d_sae=202)
    out = run(table, 310, 202, config=config, permutations=199, seed=0, early_stop_hits=0)
    alive = out.filter(pl.col("p_value").is_not_null())
    assert alive.height == 200
    assert (alive["n_permutations"] == 199).all()
    # p lives on the grid k/200: its steps are far below what a KS test on 200 values sees.
    assert kstest(alive["p_value"].to_numpy(), "uniform").pvalue > 0.01


def test_early_stopping_keeps_small_p_exact_and_large_p_calibrated():
    h, n_perm = 10, 199
    table, _ = synthetic(2, n_pairs=300, d_sae=202)
    full = run(table, 300, 202, permutations=n_perm, seed=5, early_stop_hits=0)
    early = run(table, 300, 202, permutations=n_perm, seed=5, early_stop_hits=h)
    p, done = early["p_value"].to_numpy(), early["n_permutations"].to_numpy()
    alive = ~np.isnan(early["p_value"].to_numpy(allow_copy=True).astype(float))
    ran_all = alive & (done == n_perm) & (p < h / n_perm)
    stopped = alive & ~ran_all
    assert stopped.sum() > 100 and ran_all.sum() > 0
    # Features that never reach h hits see the same permutations as in a full run.
    np.testing.assert_array_equal(p[ran_all], full["p_value"].to_numpy()[ran_all])
    np.testing.assert_array_equal(p[stopped], h / done[stopped])
    assert (done[stopped] < n_perm).mean() > 0.9  # it does save work
    assert done[stopped].mean() < 60

    # Besag-Clifford's p has P(p <= v) = v exactly at the values v it can take, so the
    # discrete KS distance is measured there; kstwo's continuous null is conservative for it.
    support = np.union1d(h / np.arange(h, n_perm + 1), np.arange(1, h + 1) / (n_perm + 1))
    ecdf = np.searchsorted(np.sort(p[alive]), support + 1e-12, side="right") / alive.sum()
    distance = np.abs(ecdf - support).max()
    assert kstwo.sf(distance, alive.sum()) > 0.01
    # and the upper range in particular: the share of p above 0.5 is about half
    assert 0.35 < (p[alive] > 0.5).mean() < 0.65


@pytest.mark.parametrize("config", [EXACT, SEED], ids=["exact", "seed"])
def test_planted_bilingual_features_are_found(config):
    table, planted = synthetic(3, n_pairs=300, d_sae=250, n_planted=50, n_dead=0)
    out = run(table, 300, 250, config=config, permutations=199, seed=1)
    found = out["q_value"].to_numpy() < 0.1
    recall = (found & planted).sum() / planted.sum()
    fdp = (found & ~planted).sum() / max(1, found.sum())
    assert recall >= 0.9 and fdp <= 0.1, (recall, fdp)
    # The planted features run all permutations; most null ones stop early.
    done = out["n_permutations"].to_numpy()
    assert (done[planted] == 199).all() and np.median(done[~planted]) < 100


def brute_force(table, n_pairs, d_sae, langs, config, n_perm, seed, h):
    """The null by definition: relabel the table's pair ids (pair slots: the rank of the id
    among those present) with permutation_stream's permutations, rescore, compare jsd."""
    observed = score_features(table, n_pairs=n_pairs, d_sae=d_sae, langs=langs, config=config)
    jsd = observed["jsd"].to_numpy()
    pair = table["pair_id"].to_numpy()
    slot = np.searchsorted(np.unique(pair), pair)
    lang = table["lang"].to_numpy()
    stream = permutation_stream(n_pairs, len(langs), seed)
    hit = []
    for _ in range(n_perm):
        perm = next(stream)
        new = slot.copy()
        for i in range(1, len(langs)):
            new[lang == langs[i]] = perm[i - 1][slot[lang == langs[i]]]
        rescored = score_features(table.with_columns(pair_id=pl.Series(new, dtype=pl.UInt32)),
                                  n_pairs=n_pairs, d_sae=d_sae, langs=langs, config=config)
        # Ties (the same alignment summed in another order) count as hits.
        hit.append(rescored["jsd"].to_numpy() <= jsd + 1e-9 * np.abs(jsd))
    cum = np.cumsum(hit, axis=0)
    reached = cum >= h if h else np.zeros_like(cum, dtype=bool)
    stops = reached.any(axis=0)
    done = np.where(stops, reached.argmax(axis=0) + 1, n_perm)
    p = np.where(stops, h / done, (1 + cum[-1]) / (1 + n_perm))
    dead = observed["dead"].to_numpy()
    return np.where(dead, np.nan, p), np.where(dead, 0, done)


@pytest.mark.parametrize("langs,config,h", [
    (("en", "es"), EXACT, 0), (("en", "es"), SEED, 0), (("en", "es", "fr"), EXACT, 0),
    (("en", "es"), EXACT, 3), (("en", "es", "fr"), EXACT, 3),
], ids=["exact", "seed", "exact-3-langs", "exact-early-stop", "3-langs-early-stop"])
def test_matches_brute_force_relabelling_of_the_table(langs, config, h):
    table, _ = synthetic(4, n_pairs=60, d_sae=16, langs=langs, n_planted=4)
    # Some features very sparse, so pairs where no or one language fires are common.
    table = table.filter((pl.col("feature_id") < 12) | (pl.col("pair_id") % 7 == 0))
    n_pairs, n_perm = 70, 40  # 10 pairs with no rows at all take part in the shuffle
    out = run(table, n_pairs, 16, langs=langs, config=config, permutations=n_perm, seed=9,
              early_stop_hits=h)
    p, done = brute_force(table, n_pairs, 16, list(langs), config, n_perm, 9, h)
    got = out["p_value"].to_numpy(allow_copy=True).astype(float)
    np.testing.assert_array_equal(got, p)
    np.testing.assert_array_equal(out["n_permutations"].to_numpy(), done)
    assert len(np.unique(p[~np.isnan(p)])) > 5  # not a degenerate comparison


def test_two_language_closed_form_matches_scoring_terms():
    rng = np.random.default_rng(0)
    a = -rng.uniform(0, 40, 10_000)
    b = np.where(rng.random(a.size) < 0.3, a + rng.normal(0, 1e-7, a.size),
                 -rng.uniform(0, 40, a.size))
    for method in ("exact", "seed"):
        fast = _pair_term(method, 2)([a, b])
        reference = pair_divergence(method)(np.column_stack([a, b]))
        # Rounding relative to the pair's probability mass, which is what D's sums need.
        assert (np.abs(fast - reference) <= 1e-13 * np.exp(np.maximum(a, b))).all()


@pytest.mark.parametrize("size", [0, 1, 7, 500])
def test_bh_matches_scipy(size):
    rng = np.random.default_rng(size)
    p = rng.random(size) ** 3
    p[: size // 4] = p[size // 2 : size // 2 + size // 4]  # ties
    if size:
        p[0] = 1.0
    expected = false_discovery_control(p, method="bh") if size else p
    np.testing.assert_allclose(bh_qvalues(p), expected, rtol=1e-12, atol=0)
    q = bh_qvalues(p)
    assert (q >= p).all() and (q <= 1).all()
    assert (np.diff(q[np.argsort(p, kind="stable")]) >= 0).all()


def test_dead_features_have_no_p_and_results_are_deterministic():
    table, _ = synthetic(5, n_pairs=100, d_sae=30, n_dead=3)
    a = run(table, 100, 30, permutations=30, seed=2)
    b = run(table, 100, 30, permutations=30, seed=2)
    c = run(table, 100, 30, permutations=30, seed=3)
    assert a.equals(b) and not a.equals(c)
    dead = a.filter(pl.col("feature_id") >= 27)
    assert dead["p_value"].null_count() == 3 and dead["q_value"].null_count() == 3
    assert (dead["n_permutations"] == 0).all()
    assert a.schema == pl.Schema({"feature_id": pl.UInt32, "p_value": pl.Float64,
                                  "q_value": pl.Float64, "n_permutations": pl.UInt32})
    alive = a.filter(pl.col("feature_id") < 27)
    assert alive["p_value"].null_count() == 0 and (alive["p_value"] > 0).all()
    np.testing.assert_allclose(alive["q_value"].to_numpy(),
                               false_discovery_control(alive["p_value"].to_numpy()))


def test_score_with_null_appends_p_and_q_to_the_scores():
    table, _ = synthetic(6, n_pairs=80, d_sae=20)
    for config in (EXACT, SEED):
        kwargs = {"n_pairs": 90, "d_sae": 20, "langs": ["en", "es"]}
        scores = score_with_null(table, score_config=config,
                                 null_config=NullConfig(permutations=25, seed=4), **kwargs)
        null = permutation_pvalues(table, score_config=config,
                                   null_config=NullConfig(permutations=25, seed=4), **kwargs)
        plain = score_features(table, config=config, **kwargs)
        assert scores.equals(pl.concat([plain, null.select("p_value", "q_value")],
                                       how="horizontal"))


def test_duplicate_rows_and_too_many_pairs_are_rejected():
    table, _ = synthetic(7, n_pairs=40, d_sae=10)
    with pytest.raises(ValueError, match="duplicate"):
        run(pl.concat([table, table.head(1)]), 40, 10, permutations=5)
    with pytest.raises(ValueError, match="n_pairs"):
        run(table, 20, 10, permutations=5)
    with pytest.raises(ValueError):
        NullConfig(permutations=-1)


def test_cli_with_permutations_writes_p_and_q(tmp_path):
    table, _ = synthetic(8, n_pairs=60, d_sae=25, n_planted=5)
    src = write_parquet(table, tmp_path / "maxacts.parquet", {"n_pairs": 60, "d_sae": 25})
    out = tmp_path / "scores.parquet"
    proc = subprocess.run([CLI, "score", str(src), "--d-sae", "25", "--langs", "en,es",
                           "--method", "exact", "--beta-rank", "5", "--permutations", "99",
                           "--seed", "3", "--out", str(out)],
                          capture_output=True, text=True, check=True)
    written = pl.read_parquet(out)
    assert written.columns == ["feature_id", "jsd", "idaf", "beta", "bi_score", "dead", "rank",
                               "p_value", "q_value"]
    expected = score_with_null(table, n_pairs=60, d_sae=25, langs=["en", "es"],
                               score_config=ScoreConfig(beta_rank=5),
                               null_config=NullConfig(permutations=99, seed=3))
    assert written.equals(expected)
    found = (written["q_value"] < 0.05).sum()
    assert f"{found} features bilingual at q < 0.05" in proc.stdout
    # Without --permutations the table is as before: no null columns.
    subprocess.run([CLI, "score", str(src), "--d-sae", "25", "--langs", "en,es", "--out",
                    str(out)], check=True, capture_output=True)
    assert "p_value" not in pl.read_parquet(out).columns
