"""MCS between dictionaries against brute-force numpy/scipy references, the random baseline
against the analytic distribution, the bilingual x MCS tests, the Parquet writer and figures."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate, stats

from polyglot_sae.mcs import baseline, core, ladder
from polyglot_sae.mcs import plots as plots_mcs
from polyglot_sae.atomic_io import read_metadata
from polyglot_sae.errors import InputError
from polyglot_sae.figures import FigureStyle

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Small figures keep the suite fast; the layout code is the same at any size.
STYLE = FigureStyle(width=7, height=4, dpi=40)


def _reference(a, b):
    """Brute force in float64: unit rows (zero rows stay zero), the full cosine matrix."""
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norm > 0, norm, 1.0)
    return unit(a) @ unit(b).T


def _check_against_reference(a, b, value, match, atol=2e-6):
    sim = _reference(a, b)
    assert value.dtype == np.float32 and match.dtype == np.int64
    np.testing.assert_allclose(value, sim.max(axis=1), atol=atol, rtol=0)
    # The chosen match attains the maximum (near-ties may pick either row).
    np.testing.assert_allclose(sim[np.arange(len(a)), match], sim.max(axis=1), atol=atol, rtol=0)


@pytest.mark.parametrize("chunk_rows, chunk_cols", [(None, None), (7, None), (5, 3), (1, 1), (100, 100)])
def test_mcs_matches_brute_force(chunk_rows, chunk_cols):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(53, 9)).astype(np.float32)
    b = rng.normal(size=(31, 9)).astype(np.float32)
    value, match = core.max_cosine_similarity(a, b, chunk_rows=chunk_rows, chunk_cols=chunk_cols)
    _check_against_reference(a, b, value, match)
    # Distinct random directions: no ties, so the argmax is the reference's.
    np.testing.assert_array_equal(match, _reference(a, b).argmax(axis=1))


def test_mcs_zero_rows_float64_and_tensors():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 6)) * 1e-200  # float64, far below float32's range
    b = rng.normal(size=(15, 6)) * 1e200
    a[[0, 7]] = 0.0
    b[[3, 14]] = 0.0
    value, match = core.max_cosine_similarity(a, b, chunk_rows=6, chunk_cols=4)
    assert np.isfinite(value).all()
    _check_against_reference(a / 1e-200, b / 1e200, value, match)
    # Zero rows of A: cosine 0 with everything, never NaN.
    assert value[0] == 0 and value[7] == 0
    # A direction whose only positive cosine is with nothing: B's zero rows give 0.
    one = np.array([[1.0, 0, 0]])
    neg = np.array([[-1.0, 0, 0], [0, 0, 0], [-1.0, -1.0, 0]])
    v, m = core.max_cosine_similarity(one, neg)
    assert v[0] == 0 and m[0] == 1
    # Torch input, bf16 and transposed views give the same answer.
    t = torch.from_numpy(rng.normal(size=(10, 6)))
    v1, m1 = core.max_cosine_similarity(t, t.T.contiguous().T[:8])
    np.testing.assert_allclose(v1[:8], 1.0, atol=1e-6)
    np.testing.assert_array_equal(m1[:8], np.arange(8))
    v2, _ = core.max_cosine_similarity(t.to(torch.bfloat16), t[:8].numpy()[::-1])
    assert v2.shape == (10,)


def test_mcs_errors_and_empty():
    with pytest.raises(InputError, match="width"):
        core.max_cosine_similarity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        core.max_cosine_similarity(np.array([[np.nan, 1.0]]), np.ones((2, 2)))
    with pytest.raises(InputError, match="chunk_rows"):
        core.max_cosine_similarity(np.ones((2, 3)), np.ones((2, 3)), chunk_rows=0)
    value, match = core.max_cosine_similarity(np.ones((0, 3)), np.ones((2, 3)))
    assert value.shape == match.shape == (0,)
    # CUDA requested without CUDA: falls back to the CPU, same numbers.
    a = np.random.default_rng(2).normal(size=(5, 4))
    np.testing.assert_array_equal(core.max_cosine_similarity(a, a, device="cuda:0")[0],
                                  core.max_cosine_similarity(a, a)[0])


def test_block_shape_bounds_the_block():
    assert core.block_shape(65536, 16384) == (4096, 16384)  # 4096 x 16384 x 4 B = 256 MiB
    rows, cols = core.block_shape(10**6, 10**7)
    assert rows * cols * 4 <= core.DEFAULT_BLOCK_BYTES and rows >= 256
    assert core.block_shape(3, 5) == (3, 5)


_entries = st.one_of(st.just(0.0), st.floats(-1e3, 1e3).filter(lambda x: abs(x) >= 1e-3))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mcs_property(data):
    d = data.draw(st.integers(1, 5))
    a = data.draw(arrays(np.float64, (data.draw(st.integers(1, 9)), d), elements=_entries))
    b = data.draw(arrays(np.float64, (data.draw(st.integers(1, 9)), d), elements=_entries))
    value, match = core.max_cosine_similarity(a, b, chunk_rows=data.draw(st.integers(1, 4)),
                                             chunk_cols=data.draw(st.integers(1, 4)))
    _check_against_reference(a, b, value, match, atol=1e-5)
    assert (value <= 1 + 1e-6).all() and (value >= -1 - 1e-6).all()
    assert ((match >= 0) & (match < len(b))).all()


# --- EMD ----------------------------------------------------------------------------------


def test_emd_matches_sorted_difference_and_scipy():
    rng = np.random.default_rng(3)
    samples = {"learned": rng.beta(2, 5, 300), "rand0": rng.beta(2, 4, 300), "rand1": rng.random(300)}
    table = baseline.emd_matrix(samples)
    assert table["name"].to_list() == list(samples)
    dist = table.drop("name").to_numpy()
    np.testing.assert_allclose(dist, dist.T)
    np.testing.assert_array_equal(np.diag(dist), 0)
    names = list(samples)
    for i, x in enumerate(names):
        for j, y in enumerate(names):
            # Equal sizes: the optimal transport pairs order statistics.
            brute = np.mean(np.abs(np.sort(samples[x]) - np.sort(samples[y])))
            assert dist[i, j] == pytest.approx(brute, abs=1e-12)
    # Known cases: a shift moves all mass by the shift; unequal sizes agree with scipy.
    shifted = baseline.emd_matrix({"a": np.array([0.1, 0.3, 0.7]), "b": np.array([0.35, 0.55, 0.95])})
    assert shifted["b"][0] == pytest.approx(0.25)
    x, y = rng.random(17), rng.random(40) * 0.5
    got = baseline.emd_matrix({"x": x, "y": y}, below=0.4)["y"][0]
    assert got == pytest.approx(stats.wasserstein_distance(x[x < 0.4], y[y < 0.4]))
    empty = baseline.emd_matrix({"x": x, "none": np.array([0.9])}, below=0.5)
    assert math.isnan(empty["none"][0]) and math.isnan(empty["none"][1])


# --- Random baseline vs the analytic distribution -----------------------------------------------


def test_random_baseline_follows_the_analytic_distribution():
    sample = baseline.random_baseline_mcs(500, 2000, 64, seeds=(0,))
    assert sample.shape == (1, 500) and sample.dtype == np.float32
    right = stats.kstest(sample[0], lambda t: baseline.analytic_mcs_cdf(t, 64, 2000))
    assert right.pvalue > 0.01
    # The test can fail: the same sample is rejected against a neighbouring dimension or size.
    for k_dim, m_draws in ((56, 2000), (72, 2000), (64, 500)):
        wrong = stats.kstest(sample[0], lambda t, k=k_dim, m=m_draws: baseline.analytic_mcs_cdf(t, k, m))
        assert wrong.pvalue < 1e-4, (k_dim, m_draws)


def test_random_baseline_seeds_differ_and_repeat():
    first = baseline.random_baseline_mcs(20, 30, 8, seeds=(0, 1))
    again = baseline.random_baseline_mcs(20, 30, 8, seeds=(0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[0], first[1])
    d = baseline.random_dictionary(4, 3, 7)
    assert d.shape == (4, 3) and d.dtype == np.float32


def test_analytic_distribution_exact_cases_and_consistency():
    t = np.linspace(-0.99, 0.99, 41)
    # K = 3: a cosine is uniform on [-1, 1] (Archimedes); K = 2: arcsine law.
    np.testing.assert_allclose(baseline.analytic_mcs_cdf(t, 3, 1), (t + 1) / 2, atol=1e-12)
    np.testing.assert_allclose(baseline.analytic_mcs_cdf(t, 3, 5), ((t + 1) / 2) ** 5, atol=1e-12)
    np.testing.assert_allclose(baseline.analytic_mcs_cdf(t, 2, 1), 1 - np.arccos(t) / np.pi, atol=1e-12)
    for k_dim, m_draws in ((64, 2000), (2304, 16384), (128, 8192)):
        q = np.array([1e-3, 0.1, 0.5, 0.9, 0.999])
        t_q = baseline.analytic_mcs_quantiles(q, k_dim, m_draws)
        assert np.all(np.diff(t_q) > 0)
        np.testing.assert_allclose(baseline.analytic_mcs_cdf(t_q, k_dim, m_draws), q, rtol=1e-8)
        # The density integrates to 1 (all but ~2e-12 of the mass lies in the grid's range)
        # and is the derivative of the CDF.
        grid = np.linspace(*baseline.analytic_mcs_quantiles([1e-12, 1 - 1e-12], k_dim, m_draws), 20001)
        mass = integrate.simpson(baseline.analytic_mcs_pdf(grid, k_dim, m_draws), x=grid)
        assert mass == pytest.approx(1, abs=1e-6)
        h = 1e-6
        numeric = (baseline.analytic_mcs_cdf(t_q + h, k_dim, m_draws)
                   - baseline.analytic_mcs_cdf(t_q - h, k_dim, m_draws)) / (2 * h)
        np.testing.assert_allclose(baseline.analytic_mcs_pdf(t_q, k_dim, m_draws), numeric, rtol=1e-4)
    # The post's setting (K = 128, M = 8192) puts the random mode near its 0.3.
    assert 0.28 < baseline.analytic_mcs_quantiles(0.5, 128, 8192) < 0.37
    assert baseline.analytic_mcs_pdf(np.array([-1.0, 1.0, 1.5]), 64, 10).tolist() == [0, 0, 0]
    with pytest.raises(InputError):
        baseline.analytic_mcs_cdf(0.1, 1, 10)


# --- Split, ladder ------------------------------------------------------------------------------


def test_split_and_ladder():
    assert ladder.mcs_split(np.array([0.1, 0.5, 0.9, 0.2]), 0.5) == {
        "n_features": 4, "n_high": 2, "n_low": 2, "share_high": 0.5, "share_low": 0.5}
    rng = np.random.default_rng(4)
    config = core.McsConfig(threshold=0.5)
    learned = {w: np.concatenate([rng.uniform(0.2, 0.4, w // 2), rng.uniform(0.8, 1, w - w // 2)])
               for w in (16, 32)}
    baselines = {16: rng.uniform(0.2, 0.45, (3, 16)), 32: rng.uniform(0.2, 0.45, (3, 32))}
    entries = [(32, 1, learned[32]), (16, 0, learned[16]), (32, 0, learned[32][::-1])]
    table = ladder.ladder_table(entries, random_baselines=baselines, config=config)
    assert table.columns == ["width", "seed", "n_features", "n_high", "n_low", "share_high",
                             "emd_to_random", "emd_random_to_random"]
    assert table.select("width", "seed").rows() == [(16, 0), (32, 0), (32, 1)]
    row = table.row(0, named=True)
    assert (row["n_features"], row["n_high"], row["n_low"], row["share_high"]) == (16, 8, 8, 0.5)
    low = learned[16][learned[16] < 0.5]
    expected = np.mean([stats.wasserstein_distance(low, r[r < 0.5]) for r in baselines[16]])
    assert row["emd_to_random"] == pytest.approx(expected)
    pairs = [stats.wasserstein_distance(baselines[16][i], baselines[16][j])
             for i, j in ((0, 1), (0, 2), (1, 2))]
    assert row["emd_random_to_random"] == pytest.approx(np.mean(pairs))
    bare = ladder.ladder_table([(16, 0, learned[16])], config=config)
    assert bare["emd_to_random"].is_null().all()
    with pytest.raises(ValueError):
        core.McsConfig(threshold=2.0)


# --- Bilingual features vs MCS ------------------------------------------------------------------


def _independent_tests(value, sig, alive, threshold):
    table = np.zeros((2, 2), dtype=int)
    for v, s, a in zip(value, sig, alive):
        if a:
            table[0 if s else 1, 0 if v >= threshold else 1] += 1
    fisher = stats.fisher_exact(table, alternative="greater")
    in_sig = [v for v, s, a in zip(value, sig, alive) if a and s]
    in_other = [v for v, s, a in zip(value, sig, alive) if a and not s]
    mwu = stats.mannwhitneyu(in_sig, in_other, alternative="greater")
    return table, fisher, mwu


def test_bilingual_vs_mcs_matches_scipy():
    rng = np.random.default_rng(5)
    n = 200
    value = rng.uniform(0, 1, n)
    sig = rng.random(n) < 0.2
    alive = rng.random(n) < 0.8
    # Dead features (excluded) are all significant and high: they must not count.
    value[~alive] = 0.99
    sig[~alive] = True
    out = ladder.bilingual_vs_mcs(value, sig, alive, threshold=0.6)
    table, fisher, mwu = _independent_tests(value, sig, alive, 0.6)
    assert out["status"] == "ok"
    assert [[out["sig_high"], out["sig_low"]], [out["other_high"], out["other_low"]]] == table.tolist()
    assert out["n_alive"] == alive.sum() and out["n_significant"] == (sig & alive).sum()
    assert out["fisher_p"] == pytest.approx(fisher.pvalue)
    assert out["odds_ratio"] == pytest.approx(fisher.statistic)
    assert out["odds_ratio"] == pytest.approx(table[0, 0] * table[1, 1] / (table[0, 1] * table[1, 0]))
    assert out["mannwhitney_p"] == pytest.approx(mwu.pvalue)
    assert out["mannwhitney_u"] == pytest.approx(mwu.statistic)


def test_bilingual_vs_mcs_planted_and_null():
    rng = np.random.default_rng(6)
    n = 400
    alive = np.ones(n, dtype=bool)
    sig = np.zeros(n, dtype=bool)
    sig[:40] = True
    # Others: 30% high-MCS. Planted: significant features are all found again (high MCS).
    base = np.where(rng.random(n) < 0.3, rng.uniform(0.7, 1, n), rng.uniform(0.1, 0.4, n))
    planted = base.copy()
    planted[:40] = rng.uniform(0.8, 1, 40)
    hit = ladder.bilingual_vs_mcs(planted, sig, alive)
    assert hit["fisher_p"] < 1e-8 and hit["mannwhitney_p"] < 1e-8
    assert hit["share_high_significant"] == 1.0
    # Not planted: the significant ones are a random subset of the same distribution.
    miss = ladder.bilingual_vs_mcs(base, sig, alive)
    assert miss["fisher_p"] > 0.05 and miss["mannwhitney_p"] > 0.05


def test_bilingual_vs_mcs_degenerate_cases():
    value = np.array([0.2, 0.9, 0.4])
    none = ladder.bilingual_vs_mcs(value, np.zeros(3, dtype=bool), np.ones(3, dtype=bool))
    assert none["status"] == "no significant alive features"
    assert math.isnan(none["fisher_p"]) and math.isnan(none["mannwhitney_p"])
    assert none["n_other"] == 3 and math.isnan(none["share_high_significant"])
    every = ladder.bilingual_vs_mcs(value, np.ones(3, dtype=bool), np.ones(3, dtype=bool))
    assert every["status"] == "no other alive features" and math.isnan(every["odds_ratio"])
    dead = ladder.bilingual_vs_mcs(value, np.ones(3, dtype=bool), np.zeros(3, dtype=bool))
    assert dead["status"] == "no alive features"
    with pytest.raises(InputError, match="boolean"):
        ladder.bilingual_vs_mcs(value, np.ones(3), np.ones(3, dtype=bool))
    with pytest.raises(InputError, match="shape"):
        ladder.bilingual_vs_mcs(value, np.ones(2, dtype=bool), np.ones(3, dtype=bool))


# --- SAE folders --------------------------------------------------------------------------------


def test_mcs_between_saes_writes_the_schema(tmp_path):
    """Real sae-lens folders (SAE.save_model), read back by the pipeline's own loader: decoder
    directions are each SAE's W_dec exactly (not W_enc.T, not norm-folded, not cast), and the
    MCS file is built from them."""
    from conftest import make_jumprelu

    rng = np.random.default_rng(7)
    weights = {"small": rng.normal(size=(12, 5)).astype(np.float32),
               "large": rng.normal(size=(30, 5)).astype(np.float32),
               "other": rng.normal(size=(30, 4)).astype(np.float32)}
    for name, w in weights.items():
        sae = make_jumprelu(w.shape[1], w.shape[0], seed=len(name))
        with torch.no_grad():  # rows of unequal norm, unrelated to the encoder
            sae.W_dec.copy_(torch.from_numpy(w))
        sae.save_model(tmp_path / name)
    for name, w in weights.items():
        got = ladder.decoder_directions(tmp_path / name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, w)
    out = ladder.mcs_between_saes(tmp_path / "small", tmp_path / "large", tmp_path / "mcs.parquet",
                               config=core.McsConfig(chunk_rows=5), provenance={"run": "test"})
    table = ladder.read_mcs(out)
    assert table.schema == pl.Schema(core.MCS_SCHEMA)
    assert table["feature_id"].to_list() == list(range(12))
    sim = _reference(weights["small"], weights["large"])
    np.testing.assert_allclose(table["mcs"].to_numpy(), sim.max(axis=1), atol=2e-6)
    np.testing.assert_array_equal(table["match_id"].to_numpy(), sim.argmax(axis=1))
    meta = read_metadata(out)
    assert meta["run"] == "test" and meta["d_sae"] == 12 and meta["reference_d_sae"] == 30
    assert meta["n_high"] + meta["n_low"] == 12 and meta["threshold"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large", "mcs.parquet", "other", "small"]
    with pytest.raises(InputError, match="d_in"):
        ladder.mcs_between_saes(tmp_path / "small", tmp_path / "other", tmp_path / "x.parquet")
    (tmp_path / "not-an-sae").mkdir()
    with pytest.raises(InputError, match="cfg.json"):
        ladder.decoder_directions(tmp_path / "not-an-sae")


# --- Figures -----------------------------------------------------------------------------------


def _check_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(8)
    random = baseline.random_baseline_mcs(300, 600, 64, seeds=(0, 1))
    learned = np.concatenate([random[0, :200], rng.uniform(0.85, 1, 100)])
    _check_png(plots_mcs.plot_mcs_histogram(learned, random, tmp_path / "hist.png", k_dim=64,
                                            m_draws=600, label="SAE 300", reference_label="SAE 600",
                                            note="test", style=STYLE))
    # In 8 dimensions every random MCS is above 0.5: the low panel says so instead of plotting.
    _check_png(plots_mcs.plot_mcs_histogram(learned, random + 0.6, tmp_path / "high.png", k_dim=8,
                                            m_draws=600, style=STYLE))
    table = ladder.ladder_table([(64, 0, learned[:64]), (64, 1, learned[64:128]), (300, 0, learned)],
                                random_baselines={300: random})
    _check_png(plots_mcs.plot_mcs_ladder(table, tmp_path / "ladder.png", style=STYLE))
    sig = np.zeros(learned.size, dtype=bool)
    sig[-10:] = True
    other = np.clip(learned + rng.normal(0, 0.05, learned.size), -1, 1)
    _check_png(plots_mcs.plot_mcs_scatter(learned, other, tmp_path / "scatter.png", significant=sig,
                                          label_b="SAE 600", label_c="SAE 1200", style=STYLE))
    _check_png(plots_mcs.plot_mcs_scatter(learned, other, tmp_path / "plain.png", style=STYLE))
    with pytest.raises(InputError, match="n_high"):
        plots_mcs.plot_mcs_ladder(table.drop("n_high"), tmp_path / "bad.png", style=STYLE)
