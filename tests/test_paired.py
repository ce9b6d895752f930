"""Tests of polyglot_sae.paired: the statistics against numpy on densified tables, the bound's
coverage in simulation, the classes on a planted table, the shared-string rules, the
paraphrase ceiling, determinism and the benchmark's smoke run."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
import pytest

from polyglot_sae.errors import InputError
from polyglot_sae.paired.classes import ClassConfig, classify
from polyglot_sae.paired.lexical import LexicalConfig, fold, is_lexical, lexical_keys
from polyglot_sae.paired.stats import PairedConfig, paired_scores, paired_stats

LANGS = ["en", "es"]


def frame(dense: dict[str, np.ndarray], ids: np.ndarray,
          tokens: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
    """The sparse max table of dense (pairs, features) arrays, one per language, rows
    shuffled (the scorer must not rely on the table's order)."""
    parts = []
    for lang, x in dense.items():
        k, f = np.nonzero(x)
        cols = {"pair_id": ids[k].astype(np.uint32), "lang": [lang] * k.size,
                "feature_id": f.astype(np.uint32), "value": x[k, f].astype(np.float32)}
        if tokens is not None:
            cols["token_id"] = tokens[lang][k, f].astype(np.uint32)
        parts.append(pl.DataFrame(cols))
    return pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=0)


def lengths_frame(lens: dict[str, np.ndarray], ids: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"pair_id": np.tile(ids, len(lens)).astype(np.uint32),
                         "lang": np.repeat(list(lens), ids.size),
                         "n_tokens": np.concatenate(list(lens.values())).astype(np.uint32)})


def random_dense(rng: np.random.Generator, n: int, d: int, langs: list[str]
                 ) -> dict[str, np.ndarray]:
    """Zero-inflated maxima, partly shared across languages, float32-exact."""
    shared = rng.random((n, d)) < rng.uniform(0.05, 0.5, d)
    z = rng.gamma(2.0, 1.0, (n, d))
    out = {}
    for lang in langs:
        fire = (shared & (rng.random((n, d)) < 0.9)) | (rng.random((n, d)) < 0.05)
        out[lang] = np.where(fire, z * rng.lognormal(0, 0.3, (n, d)), 0).astype(np.float32)
    return out


def partial_corr(a: np.ndarray, b: np.ndarray, la: np.ndarray, lb: np.ndarray) -> float:
    """Correlation of the least-squares residuals of a and b on (1, len_a, len_b)."""
    design = np.column_stack([np.ones_like(la), la, lb])
    ra = a - design @ np.linalg.lstsq(design, a, rcond=None)[0]
    rb = b - design @ np.linalg.lstsq(design, b, rcond=None)[0]
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("langs", [LANGS, ["en", "es", "fr"]], ids=["2 langs", "3 langs"])
def test_statistics_match_numpy_on_the_dense_vectors(langs):
    rng = np.random.default_rng(1)
    n, n_present, d = 320, 300, 24
    # Spread-out ids (over all of uint32 with 3 languages: no lookup table, binary search);
    # 20 scored pairs have no row at all (silent everywhere).
    ids = np.sort(rng.choice(2**32 - 1 if len(langs) == 3 else 50 * n, n, replace=False))
    dense = random_dense(rng, n, d, langs)
    for x in dense.values():
        x[n_present:] = 0
        x[:, -1] = 0  # the last feature is dead
    dense[langs[0]][:, -2] = 0  # fires in the other language(s) only
    lens = {lang: rng.integers(5, 60, n).astype(float) for lang in langs}
    out = paired_stats(frame(dense, ids), n_pairs=n, d_sae=d, langs=langs,
                       lengths=lengths_frame(lens, ids))
    x = {lang: v.astype(np.float64) for lang, v in dense.items()}

    rho = np.array([min(np.corrcoef(x[a][:, i], x[b][:, i])[0, 1]
                        for a, b in combinations(langs, 2)) for i in range(d - 2)])
    rho_len = np.array([min(partial_corr(x[a][:, i], x[b][:, i], lens[a], lens[b])
                            for a, b in combinations(langs, 2)) for i in range(d - 2)])
    np.testing.assert_allclose(out["rho"].to_numpy()[: d - 2], rho, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["rho_len"].to_numpy()[: d - 2], rho_len, rtol=0, atol=1e-9)
    assert out["rho"][d - 2] is None and out["rho"][d - 1] is None  # a side without variance
    assert out["dead"].to_list() == [False] * (d - 1) + [True]

    means = np.stack([x[lang].mean(axis=0) for lang in langs])
    nu = means - (means.sum(axis=0) - means) / (len(langs) - 1)
    np.testing.assert_allclose(out["nu_max"].to_numpy()[:-1], nu.max(axis=0)[:-1], rtol=1e-12)
    np.testing.assert_allclose(out[f"lang_share_{langs[1]}"].to_numpy()[:-1],
                               means[1, :-1] / means[:, :-1].sum(axis=0), rtol=1e-12)
    for lang in langs:
        assert (out[f"n_fire_{lang}"].to_numpy() == (x[lang] > 0).sum(axis=0)).all()
    cofire = np.min([((x[a] > 0) & (x[b] > 0)).sum(axis=0) for a, b in combinations(langs, 2)],
                    axis=0)
    assert (out["n_cofire"].to_numpy() == cofire).all()
    assert out["nu_lang"][d - 1] is None and out["rho_lo"][d - 1] is None


def test_lex_and_rho_nonlex_match_numpy():
    rng = np.random.default_rng(2)
    n, d = 400, 6
    ids = np.arange(n, dtype=np.uint32)
    dense = random_dense(rng, n, d, LANGS)
    # Token 0..2 are '▁Moisés', 'Moses', '12' (lexical with 1, 1 and 3); 3, 4 'dios', 'God'.
    vocab = {0: "▁Moisés", 1: "Moses", 2: "12", 3: "dios", 4: "God", 5: "▁12"}
    tokens = {"en": rng.choice([1, 4, 5], (n, d)), "es": rng.choice([0, 2, 3], (n, d))}
    out = paired_stats(frame(dense, ids, tokens), n_pairs=n, d_sae=d, langs=LANGS, vocab=vocab)
    a, b = dense["en"].astype(np.float64), dense["es"].astype(np.float64)
    lexical = ((tokens["en"] == 1) & (tokens["es"] == 0)) | (
        (tokens["en"] == 5) & (tokens["es"] == 2))
    for i in range(d):
        both = (a[:, i] > 0) & (b[:, i] > 0)
        drop = both & lexical[:, i]
        mass = a[:, i] * b[:, i]
        assert out["lex"][i] == pytest.approx(mass[drop].sum() / mass[both].sum(), abs=1e-12)
        keep = ~drop
        assert out["rho_nonlex"][i] == pytest.approx(
            np.corrcoef(a[keep, i], b[keep, i])[0, 1], abs=1e-9)


def test_lexical_rules():
    for a, b in [("▁Moisés", "Moses"), ("Jerusalén", "▁Jerusalem"), ("12", "12"), (",", "."),
                 ("▁Dios", "dios"), ("▁", " ")]:
        assert is_lexical(a, b), (a, b)
    for a, b in [("dios", "God"), ("▁el", "▁the"), ("Egipto", "Egypt"), ("12", "doce")]:
        assert not is_lexical(a, b), (a, b)
    assert not is_lexical(",", ".", LexicalConfig(symbols_match=False))
    assert fold("▁Jerusalén") == "jerusalen"
    # The compiled path agrees with the Python one on every combination.
    words = ["▁Moisés", "Moses", "dios", "God", "12", ",", ".", "Jerusalén", "Jerusalem", "▁"]
    keys = np.array([i << 32 | j for i in range(len(words)) for j in range(len(words)) if i != j],
                    dtype=np.int64)
    got = set(lexical_keys(keys, dict(enumerate(words)), LexicalConfig()).tolist())
    want = {int(k) for k in keys if is_lexical(words[k >> 32], words[k & 0xFFFFFFFF])}
    assert got == want


def lognormal_rho(pc: float, pa: float, pb: float, s: float, r: float) -> float:
    """Population Pearson r of zero-inflated lognormal maxima: both fire with prob. pc
    (log-values correlated r), one side alone with pa / pb; each log-value N(0, s^2)."""
    m1, m2 = np.exp(s * s / 2), np.exp(2 * s * s)
    ea, eb = (pc + pa) * m1, (pc + pb) * m1
    cov = pc * np.exp(s * s * (1 + r)) - ea * eb
    return float(cov / np.sqrt(((pc + pa) * m2 - ea ** 2) * ((pc + pb) * m2 - eb ** 2)))


def lognormal_table(rng, n, d, pc, pa, pb, s, r) -> pl.DataFrame:
    u = rng.random((n, d))
    z = rng.standard_normal((2, n, d))
    z[1] = r * z[0] + np.sqrt(1 - r * r) * z[1]
    v = np.exp(s * z)
    a = np.where(u < pc + pa, v[0], 0.0)
    b = np.where((u < pc) | ((u >= pc + pa) & (u < pc + pa + pb)), v[1], 0.0)
    return frame({"en": a, "es": b}, np.arange(n))


def test_lower_bound_covers_the_true_correlation_95_percent():
    # (n pairs, P(both fire), P(en only), P(es only), log-sd, log-correlation): 20-40 co-fired
    # pairs each, population r from 0.40 to 0.81.
    configs = [(300, 0.1, 0.03, 0.03, 0.5, 0.6), (1000, 0.02, 0.01, 0.01, 0.7, 0.5),
               (1500, 0.02, 0.02, 0.02, 0.5, 0.3), (1000, 0.03, 0.005, 0.005, 0.5, 0.8),
               (800, 0.05, 0.02, 0.02, 0.3, 0.0)]
    covered, draws = 0, 0
    for i, (n, *c) in enumerate(configs):
        table = lognormal_table(np.random.default_rng(100 + i), n, 200, *c)
        out = paired_stats(table, n_pairs=n, d_sae=200, langs=LANGS, config=PairedConfig(seed=i))
        lo = out["rho_lo"].to_numpy()
        assert not np.isnan(lo).any()
        covered += int((lo <= lognormal_rho(*c)).sum())
        draws += lo.size
    assert draws == 1000
    assert 0.92 <= covered / draws <= 0.98, covered / draws


def planted_table(seed: int = 3):
    """n pairs, 2 languages, 20 features of each kind (40 independent); returns the table,
    lengths, vocab and the kind of every feature."""
    rng = np.random.default_rng(seed)
    n = 1000
    kinds = (["concept"] * 20 + ["one_pair"] * 20 + ["length"] * 20 + ["shared"] * 20
             + ["specific_en"] * 10 + ["specific_es"] * 10 + ["independent"] * 40)
    d = len(kinds)
    len_en = rng.integers(10, 60, n).astype(float)
    len_es = np.round(1.15 * len_en + rng.normal(0, 3, n)).clip(5)
    a, b = np.zeros((n, d)), np.zeros((n, d))
    # Tokens: ids 0-199 are en words, 200-399 unrelated es words, 400 a name on both sides.
    ta, tb = rng.integers(0, 200, (n, d)), rng.integers(200, 400, (n, d))
    for i, kind in enumerate(kinds):
        if kind in ("concept", "shared"):
            on = rng.random(n) < 0.08
            z = rng.lognormal(0, 0.6, n)
            a[on, i] = z[on] * rng.lognormal(0, 0.5, on.sum())
            b[on, i] = z[on] * rng.lognormal(0, 0.5, on.sum())
            if kind == "shared":
                ta[:, i] = tb[:, i] = 400
        elif kind == "one_pair":
            k = rng.integers(n)
            a[k, i], b[k, i] = rng.lognormal(0, 0.5, 2)
        elif kind == "length":
            a[:, i] = 0.05 * len_en * rng.lognormal(0, 0.1, n)
            b[:, i] = 0.05 * len_es * rng.lognormal(0, 0.1, n)
        elif kind.startswith("specific"):
            x = a if kind.endswith("en") else b
            on = rng.random(n) < 0.2
            x[on, i] = rng.lognormal(0, 0.5, on.sum())
        else:
            for x in (a, b):
                on = rng.random(n) < 0.2
                x[on, i] = rng.gamma(2.0, 1.0, on.sum())
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {i: "▁" + "".join(rng.choice(letters, 7)) for i in range(400)} | {400: "▁Moisés"}
    ids = np.arange(n)
    return (frame({"en": a, "es": b}, ids, {"en": ta, "es": tb}),
            lengths_frame({"en": len_en, "es": len_es}, ids), vocab, np.array(kinds))


def test_planted_kinds_get_their_classes_and_concepts_rank_first():
    table, lengths, vocab, kinds = planted_table()
    out = paired_scores(table, n_pairs=1000, d_sae=kinds.size, langs=LANGS, lengths=lengths,
                        vocab=vocab)
    cls = out["class"].to_numpy()
    expected = {"concept": "concept", "one_pair": "low_support", "length": "length",
                "shared": "shared_string", "specific_en": "lang_specific:en",
                "specific_es": "lang_specific:es", "independent": "weak"}
    for kind, want in expected.items():
        recall = (cls[kinds == kind] == want).mean()
        assert recall >= 0.9, (kind, want, recall, cls[kinds == kind])
    k = int((kinds == "concept").sum())
    top = out.filter(pl.col("rank") < k)["feature_id"].to_numpy()
    assert top.size == k and (kinds[top] == "concept").mean() >= 0.9
    # Ranks are 0..m-1 over the eligible features, null elsewhere.
    eligible = np.isin(cls, ["concept", "shared_string", "length", "weak"])
    rank = out["rank"]
    assert rank.is_null().to_numpy().tolist() == (~eligible).tolist()
    assert sorted(rank.drop_nulls().to_list()) == list(range(eligible.sum()))
    # One-pair features: the bound falls to about 0, whatever rho.
    assert out.filter(pl.Series(kinds == "one_pair"))["rho_lo"].abs().max() < 0.05

    # Reclassifying with another threshold changes only the class and the ranks.
    again = classify(out, ClassConfig(concept_rho_lo=0.99), LANGS)
    assert again.columns == out.columns
    assert again.drop("class", "rank", "rank_verse").equals(out.drop("class", "rank", "rank_verse"))
    assert (again["class"] == "concept").sum() < (out["class"] == "concept").sum()


def test_paraphrase_ceiling_and_ratio_match_numpy():
    rng = np.random.default_rng(4)
    n, d = 500, 8
    ids = np.arange(n, dtype=np.uint32) * 3 + 7
    dense = random_dense(rng, n, d, ["en", "es", "en_para"])
    para_dense = dense.pop("en_para")
    covered = rng.random(n) < 0.8  # the paraphrase lacks a fifth of the pairs
    para = frame({"en_para": para_dense[covered]}, ids[covered])
    lens = {lang: rng.integers(5, 40, n) for lang in LANGS}
    lengths = pl.concat([lengths_frame(lens, ids),
                         lengths_frame({"en_para": lens["en"][covered]}, ids[covered])])
    a, b = dense["en"].astype(np.float64), dense["es"].astype(np.float64)
    p = para_dense.astype(np.float64)

    # The sample is the pairs the lengths table lists for the paraphrase; without it, the
    # pairs its table has rows for.
    with_lengths = paired_stats(frame(dense, ids), n_pairs=n, d_sae=d, langs=LANGS,
                                lengths=lengths, paraphrase=("en", "en_para", para))
    without = paired_stats(frame(dense, ids), n_pairs=n, d_sae=d, langs=LANGS,
                           paraphrase=("en", "en_para", para))
    has_rows = covered & (p > 0).any(axis=1)
    assert has_rows.sum() < covered.sum()
    for out, sample in ((with_lengths, covered), (without, has_rows)):
        for i in range(d):
            rho_para = np.corrcoef(a[sample, i], p[sample, i])[0, 1]
            assert out["rho_para"][i] == pytest.approx(rho_para, abs=1e-9)
            ratio = np.corrcoef(a[:, i], b[:, i])[0, 1] / rho_para
            assert out["ratio"][i] == pytest.approx(ratio, abs=1e-9)
            assert out["ratio_lo"][i] < ratio < out["ratio_hi"][i]
    bare = paired_stats(frame(dense, ids), n_pairs=n, d_sae=d, langs=LANGS)
    assert bare.select("rho_para", "ratio", "ratio_lo", "ratio_hi").null_count().row(0) == (d,) * 4


def test_same_seed_same_bound():
    rng = np.random.default_rng(5)
    table = frame(random_dense(rng, 300, 20, LANGS), np.arange(300))
    run = lambda seed: paired_stats(table, n_pairs=300, d_sae=20, langs=LANGS,  # noqa: E731
                                    config=PairedConfig(seed=seed))["rho_lo"].to_numpy()
    first = run(0)
    assert np.array_equal(first, run(0))
    assert not np.array_equal(first, run(1))


def test_bad_tables_are_refused():
    table = frame(random_dense(np.random.default_rng(6), 50, 4, LANGS), np.arange(50))
    with pytest.raises(InputError, match="duplicate"):
        paired_stats(pl.concat([table, table.head(1)]), n_pairs=50, d_sae=4, langs=LANGS)
    with pytest.raises(InputError, match="d_sae"):
        paired_stats(table, n_pairs=50, d_sae=2, langs=LANGS)
    with pytest.raises(InputError, match="n_pairs"):
        paired_stats(table, n_pairs=10, d_sae=4, langs=LANGS)
    with pytest.raises(InputError, match="token_id"):
        paired_stats(table, n_pairs=50, d_sae=4, langs=LANGS, vocab={0: "a"})


def test_benchmark_smoke(capsys):
    from polyglot_sae.bench.paired_bench import main

    assert main(["--pairs", "300", "--features", "64", "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "paired_scores (B=50" in printed and "peak RSS" in printed
