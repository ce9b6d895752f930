"""Tests of polyglot_sae.score.bilingual against dense references built independently of it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from conftest import expected_beta_sweep
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from polars.testing import assert_frame_equal
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from polyglot_sae.score.bilingual import ScoreConfig, per_language_counts, score_features
from polyglot_sae.score.sweeps import beta_sweep

EXACT = ScoreConfig(method="exact")
SEED = ScoreConfig(method="seed")
LN2 = float(np.log(2))


def to_table(dense: np.ndarray, langs: list[str], labels: np.ndarray | None = None) -> pl.DataFrame:
    """The sparse max-activation table of a dense (k, pairs, features) array; pair k gets id labels[k]."""
    labels = np.arange(dense.shape[1]) if labels is None else labels
    frames = []
    for lang, acts in zip(langs, dense):
        pair, feature = np.nonzero(acts)
        frames.append(
            pl.DataFrame(
                {
                    "pair_id": labels[pair].astype(np.uint32),
                    "lang": [lang] * pair.size,
                    "feature_id": feature.astype(np.uint32),
                    "value": acts[pair, feature].astype(np.float32),
                },
                schema={
                    "pair_id": pl.UInt32,
                    "lang": pl.String,
                    "feature_id": pl.UInt32,
                    "value": pl.Float32,
                },
            )
        )
    return pl.concat(frames)


def random_dense(
    rng: np.random.Generator, k: int, n_pairs: int, d_sae: int, scale: float = 10.0, density=0.3
) -> np.ndarray:
    """Float32-exact activations with silent pairs, a half-dead feature (0) and a dead one (1)."""
    fires = rng.random((k, n_pairs, d_sae)) < density
    dense = (rng.exponential(scale, (k, n_pairs, d_sae)) * fires).astype(np.float32)
    dense[:, : n_pairs // 5] = 0
    dense[1:, :, 0] = 0
    dense[:, :, 1] = 0
    return dense.astype(np.float64)


def score(dense: np.ndarray, langs: list[str], config: ScoreConfig, labels=None) -> pl.DataFrame:
    return score_features(
        to_table(dense, langs, labels),
        n_pairs=dense.shape[1],
        d_sae=dense.shape[2],
        langs=langs,
        config=config,
    )


def test_exact_two_languages_matches_scipy_jsd():
    rng = np.random.default_rng(0)
    dense = random_dense(rng, 2, n_pairs=40, d_sae=30, scale=15.0)
    assert dense.max() > 50  # large, but a plain float64 softmax still copes
    out = score(dense, ["en", "es"], EXACT)

    expected = (
        jensenshannon(softmax(dense[0], axis=0), softmax(dense[1], axis=0), axis=0, base=np.e) ** 2
    )
    np.testing.assert_allclose(out["jsd"].to_numpy(), expected, rtol=1e-9, atol=1e-13)
    assert out.schema == pl.Schema(
        {
            "feature_id": pl.UInt32,
            "jsd": pl.Float64,
            "idaf": pl.Float64,
            "beta": pl.Float64,
            "bi_score": pl.Float64,
            "dead": pl.Boolean,
            "rank": pl.UInt32,
        }
    )
    assert out["feature_id"].to_list() == list(range(30))


def test_exact_huge_values_stay_finite_and_match_log_space_reference():
    rng = np.random.default_rng(1)
    dense = random_dense(rng, 2, n_pairs=25, d_sae=12, scale=1.0)
    dense[dense > 0] += 800.0
    dense = dense.astype(np.float32).astype(np.float64)  # the table stores float32
    dense[0, 10, 2] = dense[1, 10, 2] = 0  # some large, some implicit zero logits in one feature
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(dense[0]) / np.exp(dense[0]).sum(axis=0)
    assert np.isnan(naive).any()

    out = score(dense, ["en", "es"], EXACT)
    jsd = out["jsd"].to_numpy()
    assert np.isfinite(jsd).all()
    p, q = np.exp(log_softmax(dense[0], axis=0)), np.exp(log_softmax(dense[1], axis=0))
    expected = jensenshannon(p, q, axis=0, base=np.e) ** 2
    np.testing.assert_allclose(jsd, expected, rtol=1e-9, atol=1e-13)
    assert jsd.max() > 0.5  # distributions concentrated on different pairs


def test_exact_three_languages_matches_entropy_reference():
    rng = np.random.default_rng(2)
    dense = random_dense(rng, 3, n_pairs=30, d_sae=25, scale=3.0)
    out = score(dense, ["en", "es", "fr"], EXACT)

    probs = softmax(dense, axis=1)
    expected = entropy(probs.mean(axis=0), axis=0) - np.mean(
        [entropy(p, axis=0) for p in probs], axis=0
    )
    np.testing.assert_allclose(out["jsd"].to_numpy(), expected, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("beta_rank", [0, 4, 10_000])
def test_exact_beta_idaf_bi_rank_follow_definitions(beta_rank):
    rng = np.random.default_rng(3)
    density = rng.uniform(0.02, 0.6, size=40)
    # scale 3 keeps the JSDs off ln 2, so the clamped beta_rank picks a distinct one
    dense = random_dense(rng, 2, n_pairs=30, d_sae=40, scale=3.0, density=density)
    out = score(dense, ["en", "es"], ScoreConfig(method="exact", beta_rank=beta_rank))
    jsd = (
        jensenshannon(softmax(dense[0], axis=0), softmax(dense[1], axis=0), axis=0, base=np.e) ** 2
    )

    count = (dense > 0).sum(axis=(0, 1))
    dead = ((dense > 0).sum(axis=1) == 0).any(axis=0)
    assert dead[0] and dead[1] and not dead.all()
    with np.errstate(divide="ignore"):
        idaf = np.where(count > 0, 2 * 30 / count, np.nan)
    alive_jsd = sorted(jsd[~dead])
    beta = -(alive_jsd[min(beta_rank, len(alive_jsd) - 1)] - alive_jsd[0]) / (
        idaf[~dead].max() - idaf[~dead].min()
    )
    assert beta < 0 or beta_rank == 0
    bi = jsd + beta * idaf
    ranked = sorted(np.flatnonzero(~dead), key=lambda i: (bi[i], i))

    np.testing.assert_array_equal(out["dead"].to_numpy(), dead)
    np.testing.assert_allclose(out["idaf"].fill_null(np.nan).to_numpy(), idaf)
    np.testing.assert_allclose(out["beta"].to_numpy(), beta, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(
        out["bi_score"].fill_null(np.nan).to_numpy(), bi, rtol=1e-9, atol=1e-13
    )
    assert out.filter(~pl.col("dead")).sort("rank")["feature_id"].to_list() == ranked
    assert out.filter(pl.col("dead"))["rank"].null_count() == dead.sum()
    assert out["idaf"][1] is None and out["bi_score"][1] is None  # never fires anywhere


def test_beta_is_zero_when_all_alive_features_are_equally_rare():
    dense = np.zeros((2, 6, 3))
    dense[:, 0, 0] = [1.0, 2.0]
    dense[:, 3, 2] = [5.0, 1.0]
    out = score(dense, ["en", "es"], EXACT)
    assert out["beta"].to_list() == [0.0] * 3
    assert out["bi_score"][1] is None  # never fires: no idaf
    np.testing.assert_array_equal(out["bi_score"].to_numpy()[[0, 2]], out["jsd"].to_numpy()[[0, 2]])


@pytest.mark.parametrize("method", ["exact", "seed"])
def test_beta_sweep_matches_the_score_table(method):
    """polyglot_sae.score.sweeps.beta_sweep against the sweep recomputed from score_features' table
    (jsd and idaf only), on features of very different firing rates, where beta reorders."""
    rng = np.random.default_rng(11)
    dense = random_dense(rng, 2, n_pairs=60, d_sae=40, density=rng.uniform(0.05, 0.9, 40))
    config = ScoreConfig(method=method, beta_rank=5)
    scores = score(dense, ["en", "es"], config)
    ranks = [0, 2, 5, 12, 30]
    sweep = beta_sweep(to_table(dense, ["en", "es"]), n_pairs=60, d_sae=40, langs=["en", "es"],
                       config=config, beta_ranks=ranks, top_k=6)
    expected = expected_beta_sweep(scores, ranks, top_k=6)
    assert_frame_equal(sweep, expected, abs_tol=1e-12)
    # The data exercises the sweep: beta moves the top-k, and not to the reference's.
    assert expected["beta"].n_unique() == len(ranks) and expected["jaccard_topk"].min() < 1
    assert expected.filter(pl.col("beta_rank") == 5)["jaccard_topk"].item() == 1.0


def seed_reference(es_acts: torch.Tensor, en_acts: torch.Tensor, beta_rank: int = 300):
    """The published code, verbatim, on dense (pairs, features) per-pair maxima.

    The only change: float64 as torch's default dtype, so that Idaf's int division
    (float32 in the original) is float64 like the rest.
    """

    def ur_kldiv(input, target, dim=0):
        return target * (target.log() - input.log())

    def JSD(p_logits, q_logits, dim=0):
        p, q = p_logits.to(torch.float64), q_logits.to(torch.float64)
        p = p * 100 / p.max()
        q = q * 100 / q.max()
        p = p.softmax(dim=dim)
        q = q.softmax(dim=dim)
        m = 0.5 * (p + q)
        jsd = 0.5 * (ur_kldiv(p, m).mean(dim=0) + ur_kldiv(q, m).mean(dim=0))
        return jsd

    def Idaf(activations):
        d, l, t, f = activations.size()
        idaf = (d * l) / (activations.view(-1, t, f).max(dim=1).values > 0).sum(0)
        idaf = torch.where(((d * l) / idaf) < 10, 1.0, idaf)
        return -idaf

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        es_dead = (es_acts > 0).sum(0) == 0
        en_dead = (en_acts > 0).sum(0) == 0
        dead_features = es_dead | en_dead
        jsd = JSD(es_acts, en_acts)
        # (pairs, langs, tokens=1, features): the per-pair max is its own max over tokens.
        idaf = Idaf(torch.stack([es_acts, en_acts], dim=1).unsqueeze(2))
        beta_num = -(
            jsd[~dead_features].sort(descending=False).values[beta_rank] - jsd[~dead_features].min()
        ).item()
        beta = beta_num / (idaf[~dead_features].max() - idaf[~dead_features].min())
        BI = jsd + beta * idaf
        order = BI.argsort()
        order = order[~dead_features[order]]
    finally:
        torch.set_default_dtype(default)
    return jsd, idaf, beta, BI, dead_features, order


def test_seed_matches_published_code():
    rng = np.random.default_rng(4)
    n_pairs, d_sae = 60, 400
    dense = random_dense(
        rng, 2, n_pairs, d_sae, scale=5.0, density=rng.uniform(0.01, 0.5, size=d_sae)
    )
    dense[:, :, 2:4] = 0
    dense[:, :5, 2] = 1.5  # count exactly 10: keeps its idaf
    dense[0, :4, 3] = dense[1, 10:15, 3] = 2.5  # count 9: idaf forced to -1
    es, en = (torch.from_numpy(acts.astype(np.float32)) for acts in dense)
    reference = seed_reference(es, en)
    jsd, idaf, beta, bi, dead, order = (x.numpy() if torch.is_tensor(x) else x for x in reference)
    count = (dense > 0).sum(axis=(0, 1))
    assert (~dead).sum() > 301 and dead.any()
    assert ((count < 10) & ~dead).sum() > 5

    out = score(dense, ["es", "en"], SEED)
    # The dense transcription itself is off by up to ~1e-10 relative on JSDs near 1e-7,
    # where its terms cancel (see the high-precision test below).
    np.testing.assert_allclose(out["jsd"].to_numpy(), jsd, rtol=1e-9, atol=1e-15)
    # torch divides a scalar by a tensor as scalar * reciprocal: 1 ulp off a true division.
    np.testing.assert_allclose(out["idaf"].to_numpy(), idaf, rtol=1e-15)
    assert out["idaf"][2] == -2 * n_pairs / 10 and out["idaf"][3] == -1.0
    np.testing.assert_allclose(out["beta"].to_numpy(), float(beta), rtol=1e-11)
    np.testing.assert_allclose(out["bi_score"].to_numpy(), bi, rtol=1e-11, atol=1e-15)
    np.testing.assert_array_equal(out["dead"].to_numpy(), dead)
    assert out.filter(~pl.col("dead")).sort("rank")["feature_id"].to_list() == order.tolist()


def test_divergences_match_50_digit_arithmetic():
    """Near-identical and near-concentrated distributions, where float64 terms cancel."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    n_pairs = 12
    dense = np.zeros((2, n_pairs, 5))
    dense[1, 3, 0] = 0.02  # one language uniform, the other barely not
    dense[:, 4, 1] = [30.0, 20.0]  # both put nearly all mass on pair 4
    dense[:, 5, 1] = [2.0, 9.0]
    dense[:, :, 2] = np.linspace(0.5, 6.0, n_pairs)  # nearly identical
    dense[1, :, 2] *= 1.01
    dense[0, ::2, 3] = 40.0  # seed: sets language 0's global max
    dense[1, 1::3, 3] = 35.0
    dense[1, 7, 4] = dense[0, 7, 4] = 1.0  # seed: same values, different global scales
    dense = dense.astype(np.float32).astype(np.float64)

    def reference(method: str) -> list[float]:
        scale = [
            mpmath.mpf(100) / mpmath.mpf(acts.max()) if method == "seed" else 1 for acts in dense
        ]
        jsd = []
        for i in range(dense.shape[2]):
            probs = []
            for acts, s in zip(dense, scale):
                weights = [mpmath.exp(mpmath.mpf(float(x)) * s) for x in acts[:, i]]
                probs.append([w / sum(weights) for w in weights])
            total = mpmath.mpf(0)
            for p, q in zip(*probs):
                m = (p + q) / 2
                if method == "seed":
                    total += (m * mpmath.log(m / p) + m * mpmath.log(m / q)) / 2 / n_pairs
                else:
                    total += (p * mpmath.log(p / m) + q * mpmath.log(q / m)) / 2
            jsd.append(float(total))
        return jsd

    for config in (EXACT, SEED):
        out = score(dense, ["en", "es"], config)
        np.testing.assert_allclose(out["jsd"].to_numpy(), reference(config.method), rtol=1e-13)


def test_rarity_term_sign_differs_between_methods():
    """The text rewards rare features; the seed code, negating idaf and beta, penalises them."""
    rng = np.random.default_rng(5)
    dense = random_dense(rng, 2, n_pairs=50, d_sae=60, density=rng.uniform(0.02, 0.9, size=60))
    count = pl.DataFrame(
        {"feature_id": np.arange(60, dtype=np.uint32), "count": (dense > 0).sum((0, 1))}
    )
    for method, sign in [("exact", -1), ("seed", 1)]:
        out = score(dense, ["en", "es"], ScoreConfig(method=method, beta_rank=20))
        alive = (
            out.filter(~pl.col("dead"))
            .join(count, on="feature_id")
            .with_columns(penalty=pl.col("bi_score") - pl.col("jsd"))
            .sort("count")
        )
        assert alive["beta"][0] < 0
        counted = alive.filter(pl.col("count") >= 10)
        assert counted.height > 20
        # rarer: more reward (exact) or more penalty (seed)
        assert (counted["penalty"] * sign > 0).all()
        assert (np.diff(counted["penalty"].to_numpy()) * sign <= 1e-15).all()
        if method == "seed":
            rare = alive.filter(pl.col("count") < 10)
            assert rare.height > 0  # the seed's idaf is -1 below 10 firings: the least penalty
            np.testing.assert_allclose(rare["penalty"].to_numpy(), -rare["beta"].to_numpy())
            assert (rare["penalty"] < counted["penalty"].min()).all()


def test_scores_without_densifying_astronomical_pair_counts():
    table = pl.DataFrame(
        {
            "pair_id": [7, 7, 3_000_000_000, 12],
            "lang": ["en", "es", "en", "es"],
            "feature_id": [0, 0, 1, 1],
            "value": [900.0, 900.0, 2.0, 2.0],
        }
    )
    for config in (EXACT, SEED):
        out = score_features(table, n_pairs=10**12, d_sae=2, langs=["en", "es"], config=config)
        assert out["jsd"][0] == 0.0 and np.isfinite(out["jsd"][1]) and out["jsd"][1] > 0


def test_per_language_counts_and_other_languages_are_ignored():
    rng = np.random.default_rng(6)
    dense = random_dense(rng, 3, n_pairs=20, d_sae=8)
    table = to_table(dense, ["en", "es", "fr"])
    counts = per_language_counts(table, ["es", "en"], 8)
    np.testing.assert_array_equal(counts, (dense[[1, 0]] > 0).sum(axis=1))
    with_fr = score_features(table, n_pairs=20, d_sae=8, langs=["en", "es"], config=EXACT)
    without_fr = score(dense[:2], ["en", "es"], EXACT)
    assert with_fr.equals(without_fr)


def small_dense(k: int):
    return arrays(
        np.float64,
        st.tuples(st.just(k), st.integers(1, 7), st.integers(1, 4)),
        elements=st.one_of(st.just(0.0), st.floats(0.125, 60.0, width=32)),
    ).map(_ensure_rows)


def _ensure_rows(dense: np.ndarray) -> np.ndarray:
    """Every language needs at least one row for the table to be valid."""
    dense = dense.copy()
    for acts in dense:
        if not acts.any():
            acts[0, 0] = 1.0
    return dense


@settings(max_examples=60, deadline=None)
@given(small_dense(2))
def test_exact_jsd_is_bounded_and_symmetric(dense):
    jsd = score(dense, ["en", "es"], EXACT)["jsd"].to_numpy()
    assert (jsd >= -1e-15).all() and (jsd <= LN2 + 1e-12).all()
    for config in (EXACT, SEED):
        forward = score(dense, ["en", "es"], config)["jsd"].to_numpy()
        swapped = score(dense[::-1], ["en", "es"], config)["jsd"].to_numpy()
        np.testing.assert_allclose(forward, swapped, rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(small_dense(1))
def test_identical_languages_have_zero_divergence(dense):
    both = np.concatenate([dense, dense])
    for config in (EXACT, SEED):
        assert (score(both, ["en", "es"], config)["jsd"].to_numpy() == 0).all()


@settings(max_examples=60, deadline=None)
@given(
    dense=small_dense(2),
    method=st.sampled_from(["exact", "seed"]),
    data=st.data(),
)
def test_relabelling_pairs_changes_nothing(dense, method, data):
    n_pairs = dense.shape[1]
    labels = np.array(
        data.draw(
            st.lists(st.integers(0, 2**32 - 1), min_size=n_pairs, max_size=n_pairs, unique=True)
        )
    )
    perm = np.array(data.draw(st.permutations(range(n_pairs))))
    config = ScoreConfig(method=method, beta_rank=1)
    plain = score(dense, ["en", "es"], config)
    relabelled = score(dense[:, perm], ["en", "es"], config, labels=labels)
    for column in ("jsd", "idaf", "beta", "bi_score"):
        np.testing.assert_allclose(
            relabelled[column].fill_null(np.nan).to_numpy(),
            plain[column].fill_null(np.nan).to_numpy(),
            rtol=1e-12,
            atol=1e-15,
        )
    assert relabelled["dead"].equals(plain["dead"])


def _table(**overrides) -> pl.DataFrame:
    columns = {
        "pair_id": [0, 1, 0],
        "lang": ["en", "en", "es"],
        "feature_id": [0, 1, 1],
        "value": [1.0, 2.0, 3.0],
    }
    return pl.DataFrame(columns | overrides)


@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        (_table(feature_id=[0, 5, 1]), {}, "d_sae"),
        (_table(value=[1.0, 0.0, 3.0]), {}, "<= 0"),
        (_table(value=[1.0, -2.0, 3.0]), {}, "<= 0"),
        (_table(value=[1.0, float("nan"), 3.0]), {}, "not finite"),
        (_table(value=[1.0, float("inf"), 3.0]), {}, "not finite"),
        (_table(lang=["en", "en", "de"]), {}, "no rows"),
        (_table(pair_id=[0, 1, 2]), {"n_pairs": 2}, "distinct pair"),
        (_table(pair_id=[0, 0, 0], feature_id=[1, 1, 1]), {}, "duplicate"),
        (_table(), {"langs": ["en", "es", "fr"], "config": SEED}, "exactly 2"),
        (_table(), {"langs": ["en"]}, "at least 2"),
        (_table().drop("value"), {}, "lacks columns"),
    ],
)
def test_invalid_input_raises(table, kwargs, message):
    args = {"n_pairs": 4, "d_sae": 2, "langs": ["en", "es"], "config": EXACT} | kwargs
    with pytest.raises(ValueError, match=message):
        score_features(table, **args)


def test_invalid_config_raises():
    with pytest.raises(ValueError, match="method"):
        ScoreConfig(method="dense")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta_rank"):
        ScoreConfig(beta_rank=-1)


def test_score_file_reads_provenance_and_writes_scores(tmp_path):
    from polyglot_sae.errors import InputError
    from polyglot_sae.atomic_io import read_metadata, write_parquet
    from polyglot_sae.score.files import score_file

    dense = random_dense(np.random.default_rng(7), 2, n_pairs=15, d_sae=6)
    table = to_table(dense, ["en", "es"])
    write_parquet(table, tmp_path / "maxacts.parquet", {"n_pairs": 15, "d_sae": 6, "hook": "h"})
    scores = score_file(
        tmp_path / "maxacts.parquet", tmp_path / "scores.parquet", langs=["en", "es"], config=SEED
    )

    assert scores.equals(score(dense, ["en", "es"], SEED))
    assert pl.read_parquet(tmp_path / "scores.parquet").equals(scores)
    meta = read_metadata(tmp_path / "scores.parquet")
    assert (
        meta["method"] == "seed"
        and meta["n_pairs"] == 15
        and meta["d_sae"] == 6
        and meta["hook"] == "h"
    )

    write_parquet(table, tmp_path / "bare.parquet", {"n_pairs": 15})
    with pytest.raises(InputError, match="d_sae"):
        score_file(
            tmp_path / "bare.parquet", tmp_path / "out.parquet", langs=["en", "es"], config=EXACT
        )
    wider = score_file(
        tmp_path / "bare.parquet",
        tmp_path / "out.parquet",
        langs=["en", "es"],
        config=EXACT,
        d_sae=9,
    )
    assert wider.height == 9
