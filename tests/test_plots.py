"""Every figure writes a valid PNG from small synthetic inputs; missing columns are clear errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from polyglot_sae import figures, subsample
from polyglot_sae.activations import plots as activation_plots
from polyglot_sae.score import plots
from polyglot_sae.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Small figures keep the suite fast; the layout code is the same at any size.
STYLE = figures.FigureStyle(width=8, height=4.5, dpi=60)


def _maxacts(n_pairs=40, d_sae=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for code, lang in enumerate(["es", "en"]):
        # Feature i fires on ~ a share 1/(i+1) of the pairs: the blog's decaying curve.
        rate = 1 / (np.arange(d_sae) + 1)
        fires = rng.random((n_pairs, d_sae)) < rate
        pair, feature = np.nonzero(fires)
        rows.append(pl.DataFrame({
            "pair_id": pair.astype(np.uint32), "lang": lang, "feature_id": feature.astype(np.uint32),
            "value": rng.gamma(2.0, 2.0 + code, pair.size).astype(np.float32) + 1e-3,
        }))
    return pl.concat(rows)


def _scores(d_sae=60, seed=0, negative=False):
    rng = np.random.default_rng(seed)
    bi = np.exp(rng.normal(-17, 2, d_sae)) - (1e-7 if negative else 0)
    dead = rng.random(d_sae) < 0.2
    p = np.where(rng.random(d_sae) < 0.3, rng.random(d_sae) * 0.01, rng.random(d_sae))
    return pl.DataFrame({
        "feature_id": np.arange(d_sae, dtype=np.uint32),
        "bi_score": bi, "beta": np.full(d_sae, -1.3e-9), "dead": dead,
        "p_value": p, "q_value": np.minimum(p * 5, 1),
    }).with_columns(pl.when(~pl.col("dead")).then(pl.col("p_value", "q_value")).name.keep())


def _check_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # No temporary files left beside it.
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_activation_share(tmp_path):
    out = activation_plots.plot_activation_share(_maxacts(), 40, ["es", "en"], tmp_path / "share.png",
                                      d_sae=60, note="layer 20", style=STYLE)
    _check_png(out)
    _check_png(activation_plots.plot_activation_share(_maxacts(), 40, ["es", "en"], tmp_path / "s2.png",
                                           style=STYLE))


@pytest.mark.parametrize("negative", [False, True])
def test_bi_curve(tmp_path, negative):
    _check_png(plots.plot_bi_curve(_scores(negative=negative), tmp_path / "curve.png", "seed",
                                   note="beta_rank=300", style=STYLE))


def test_pvalue_histogram(tmp_path):
    _check_png(plots.plot_pvalue_histogram(_scores(), tmp_path / "p.png", style=STYLE))


def test_beta_sweep(tmp_path):
    ranks = [0, 10, 30, 100, 300, 1000]
    sweep = pl.DataFrame({"beta_rank": ranks, "beta": [-1e-9 * (r + 1) for r in ranks],
                          "jaccard_topk": [0.6, 0.7, 0.8, 0.9, 1.0, 0.8],
                          "kendall_tau": [0.2, 0.5, 0.8, 0.95, 1.0, 0.9]})
    _check_png(plots.plot_beta_sweep(sweep, tmp_path / "nested" / "beta.png", top_k=20,
                                     reference_beta_rank=300, style=STYLE))


def test_dataset_size(tmp_path):
    n = np.array([50, 100, 200, 400, 800])
    sig = np.array([3, 8, 20, 41, 90])
    overlap = np.array([0.1, 0.25, 0.45, 0.7, 1.0])
    ablation = pl.DataFrame({"n_pairs": n, "n_found": sig, "n_found_lo": sig * 0.7,
                             "n_found_hi": sig * 1.3, "topk_overlap": overlap,
                             "topk_overlap_lo": overlap * 0.8,
                             "topk_overlap_hi": np.minimum(overlap * 1.2, 1)})
    _check_png(subsample.plot_dataset_size(ablation, tmp_path / "size.png", top_k=20, style=STYLE))


def test_missing_columns_are_clear(tmp_path):
    cases = [
        (lambda: activation_plots.plot_activation_share(_maxacts().drop("value"), 40, ["es", "en"],
                                             tmp_path / "a.png"), "value"),
        (lambda: plots.plot_bi_curve(_scores().drop("dead"), tmp_path / "b.png", "seed"), "dead"),
        (lambda: plots.plot_pvalue_histogram(_scores().drop("q_value"), tmp_path / "c.png"),
         "q_value"),
        (lambda: plots.plot_beta_sweep(pl.DataFrame({"beta_rank": [1]}), tmp_path / "d.png"),
         "kendall_tau"),
        (lambda: subsample.plot_dataset_size(pl.DataFrame({"n_pairs": [1]}), tmp_path / "e.png"),
         "topk_overlap_hi"),
    ]
    for call, column in cases:
        with pytest.raises(InputError, match=column) as err:
            call()
        assert "missing column" in err.value.problem
    assert list(tmp_path.iterdir()) == []


def test_absent_language_is_clear(tmp_path):
    with pytest.raises(InputError, match="'fr'"):
        activation_plots.plot_activation_share(_maxacts(), 40, ["es", "fr"], tmp_path / "a.png")
