"""The layer profile's columns against hand computations on synthetic tables."""

import numpy as np
import polars as pl
import pytest

from polyglot_sae.errors import InputError
from polyglot_sae.layers.profile import (LayerConfig, active_sets_iou, bootstrap_mean,
                                         check_one_per_hook, class_columns, derangement,
                                         hook_order, logit_lens_columns, overlap_columns)


def _maxacts(seed: int = 0, n_pairs: int = 40, d_sae: int = 30,
             langs=("en", "es")) -> pl.DataFrame:
    """Sparse random maxima; language b shares about half of language a's features."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_pairs):
        base = set(rng.choice(d_sae, rng.integers(1, 8), replace=False).tolist())
        for i, lang in enumerate(langs):
            own = {f for f in base if i == 0 or rng.random() < 0.5}
            own |= set(rng.choice(d_sae, rng.integers(0, 3), replace=False).tolist())
            rows += [(p * 3, lang, f, float(rng.uniform(0.1, 2))) for f in sorted(own)]
    return pl.DataFrame(rows, schema={"pair_id": pl.UInt32, "lang": pl.String,
                                      "feature_id": pl.UInt32, "value": pl.Float32}, orient="row")


def _sets(maxacts, lang):
    out = {}
    for p, f in maxacts.filter(pl.col("lang") == lang).select("pair_id", "feature_id").iter_rows():
        out.setdefault(p, set()).add(f)
    return out


def test_iou_per_pair_equals_python_sets():
    maxacts = _maxacts()
    a, b = _sets(maxacts, "en"), _sets(maxacts, "es")
    pairs = sorted(set(a) | set(b))
    expected = [len(a.get(p, set()) & b.get(p, set())) / len(a.get(p, set()) | b.get(p, set()))
                for p in pairs]
    got = active_sets_iou(maxacts, "en", "es")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert 0.1 < got.mean() < 0.9  # neither all nor nothing shared


def test_random_pairs_use_a_derangement():
    maxacts = _maxacts(1)
    ids = maxacts["pair_id"].unique().to_numpy()
    shift = derangement(ids, seed=4)
    assert sorted(shift) == sorted(shift.values()) == sorted(ids.tolist())
    assert all(k != v for k, v in shift.items())
    a, b = _sets(maxacts, "en"), _sets(maxacts, "es")
    shifted = {p: b[shift[p]] for p in shift if shift[p] in b}
    expected = [len(a.get(p, set()) & shifted.get(p, set()))
                / len(a.get(p, set()) | shifted.get(p, set())) for p in sorted(set(a) | set(shifted))]
    np.testing.assert_allclose(active_sets_iou(maxacts, "en", "es", shift), expected, atol=1e-15)


def test_overlap_columns_intervals_and_ordering():
    maxacts = _maxacts(2, n_pairs=80)
    para = maxacts.filter(pl.col("lang") == "en").with_columns(lang=pl.lit("en_para"))
    cols = overlap_columns(maxacts, ["en", "es"], para, LayerConfig(bootstrap=300, seed=1))
    assert cols["iou_para"] == 1.0 == cols["iou_para_lo"]  # an identical paraphrase
    for name in ("iou_en_es", "iou_random"):
        assert cols[f"{name}_lo"] < cols[name] < cols[f"{name}_hi"]
    assert cols["iou_random"] < cols["iou_en_es"]  # translations share more than strangers


def test_bootstrap_mean_covers_the_mean_at_its_rate():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(300):
        values = rng.exponential(1.0, 60)
        _, lo, hi = bootstrap_mean(values, 200, seed=trial)
        covered += lo <= 1.0 <= hi
    assert 0.88 <= covered / 300 <= 0.99


def test_class_and_logit_lens_columns_by_hand():
    classes = ["concept", "concept", "shared_string", "dead", "lang_specific:es", "weak",
               "low_support", "lang_specific:en"]
    rho = [0.8, 0.6, 0.5, None, 0.1, 0.2, 0.9, 0.0]
    paired = pl.DataFrame({"feature_id": list(range(8)), "class": classes, "rho": rho,
                           "dead": [c == "dead" for c in classes]})
    cols = class_columns(paired, ["en", "es"])
    assert cols["n_concept"] == 2 and cols["share_concept"] == 2 / 8
    assert cols["n_lang_specific_es"] == 1 and cols["share_dead"] == 1 / 8
    assert cols["median_rho"] == np.median([0.8, 0.6, 0.5, 0.2])  # supported classes only
    enrichment = pl.DataFrame({
        "feature_id": [0, 1, 2, 3, 0, 4], "set_name": ["lang_en"] * 4 + ["lang_es"] * 2,
        "auc": [0.9, 0.4, 0.7, 0.9, 0.8, 0.9], "q_dir_greater": [0.01, 0.01, 0.2, 0.01, 0.02, 0.0]})
    lens = logit_lens_columns(enrichment, paired, ["en", "es"])
    # en: feature 0 (feature 1 has auc < 0.5, 2 is not significant, 3 is dead); es: 0 and 4
    assert lens == {"promotes_en": 1 / 7, "promotes_es": 2 / 7}


def test_hook_order_and_one_sae_per_hook():
    hooks = ["blocks.10.hook_resid_post", "blocks.2.hook_mlp_out", "blocks.2.hook_resid_post",
             "blocks.2.hook_attn_out", "hook_embed"]
    assert sorted(hooks, key=hook_order) == ["hook_embed", "blocks.2.hook_attn_out",
                                             "blocks.2.hook_mlp_out", "blocks.2.hook_resid_post",
                                             "blocks.10.hook_resid_post"]
    entries = [{"id": "a", "hook": "blocks.1.hook_resid_post", "train": {"d_sae": 64}},
               {"id": "b", "hook": "blocks.1.hook_resid_post", "train": {"d_sae": 128}}]
    with pytest.raises(InputError, match=r"saes\[a\] and saes\[b\].*d_sae 64 and 128"):
        check_one_per_hook(entries)
    check_one_per_hook(entries[:1])
