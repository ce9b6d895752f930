"""The causal stage end to end on tiny files: the table's columns, its p-values, q-values, bars
and verdicts recomputed by hand from its own control rows, the whole-dictionary table and
figure, the held-out pool (outside both splits, disjoint parts), and bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from polyglot_sae.causal.config import CausalConfig
from polyglot_sae.causal.verdict import headline
from polyglot_sae.errors import InputError


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    from polyglot_sae.bench.causal_bench import tiny_inputs

    return tiny_inputs(tmp_path_factory.mktemp("causal") / "inputs")


def test_stage_writes_the_table_and_the_figure(stage_inputs, tmp_path):
    from polyglot_sae.atomic_io import read_metadata
    from polyglot_sae.causal.stage import causal_figure_file, causal_file, dictionary_figure_file

    config = CausalConfig(top_n=4, class_top_n=4, features=[3], pool_pairs=20,
                          pairs_per_lang=5, control_sentences=3, controls=12, bootstrap=50,
                          dictionary_sentences=2, device="cpu")
    table = causal_file(**stage_inputs, out_path=tmp_path / "causal.parquet",
                        figure_path=tmp_path / "causal.png", config=config,
                        dictionary_path=tmp_path / "dictionary.parquet")
    for lang in ("en", "es"):
        for col in ("effect_{}", "effect_{}_lo", "effect_{}_hi", "n_sentences_{}",
                    "control_p95_{}", "clean_loss_{}", "words_{}", "kl_{}", "kl_{}_lo",
                    "kl_{}_hi", "p_{}", "q_{}"):
            assert col.format(lang) in table.columns
    assert {"steer_en_en", "steer_en_es", "steer_es_en", "steer_es_es", "feature_id", "source",
            "is_control", "verdict", "alpha", "firing_rate", "magnitude"} <= set(table.columns)
    tested = table.filter(~pl.col("is_control"))
    controls = table.filter(pl.col("is_control"))
    assert controls.height == 12 and controls["n_sentences_en"].max() <= 3
    assert tested["n_sentences_en"].max() <= 5
    assert tested.filter(pl.col("source").str.contains("paired:top4")).height == 4
    assert tested.filter(pl.col("source").str.contains("paired:concept")).height == 4
    assert tested.filter(pl.col("source").str.contains("seed:top4")).height == 4
    assert "config" in tested.filter(pl.col("feature_id") == 3)["source"][0]
    measured = table.filter(pl.col("n_sentences_en") > 0)
    assert measured.height > 0
    for stat in ("effect_en", "kl_en"):
        assert (measured[f"{stat}_lo"] <= measured[stat] + 1e-12).all()
        assert (measured[stat] <= measured[f"{stat}_hi"] + 1e-12).all()
    assert (measured["kl_en"] >= 0).all()
    silent = table.filter((pl.col("n_sentences_en") == 0) & (pl.col("n_sentences_es") == 0))
    assert (silent["verdict"] == "untested").all()
    _check_significance(table, ["en", "es"], config.fdr)
    assert (tmp_path / "causal.png").stat().st_size > 10_000
    meta = read_metadata(tmp_path / "causal.parquet")
    assert meta["causal"]["pairs_per_lang"] == 5 and meta["hook"] == stage_inputs["hook"]
    assert causal_figure_file(tmp_path / "causal.parquet", tmp_path / "again.png",
                              ["en", "es"]).stat().st_size > 10_000
    assert headline(table).startswith("Causal check: paired top 4 — ")
    dictionary = pl.read_parquet(tmp_path / "dictionary.parquet")
    assert dictionary.height == 64 and dictionary["n_dict_en"].max() == 2
    fired = dictionary.filter(pl.col("n_dict_en") > 0)
    assert fired.height > 10 and fired["kl_en"].is_not_null().all()
    assert (fired["kl_en"] >= 0).all() and not (fired["alive"] == False).any()  # noqa: E712
    checks = read_metadata(tmp_path / "dictionary.parquet")["validation"]
    assert set(checks) == {"en", "es"} and all(c["features"] >= 0 for c in checks.values())
    assert dictionary_figure_file(tmp_path / "dictionary.parquet",
                                  [stage_inputs["scores"]["paired"]], tmp_path / "dict.png",
                                  ["en", "es"]).stat().st_size > 10_000


def _check_significance(table: pl.DataFrame, langs, fdr: float) -> None:
    """The table's residuals, p- and q-values, bars and verdicts recomputed from its own rows,
    by hand."""
    ctrl = table.filter(pl.col("is_control"))
    tested = table.filter(~pl.col("is_control"))

    def cov(t):
        return np.column_stack([np.ones(t.height), np.log(np.maximum(t["firing_rate"], 1e-12)),
                                np.log(t["magnitude"].to_numpy())])

    q_all = {}
    for lang in langs:
        fit = ctrl.filter(pl.col(f"kl_{lang}").is_not_nan())
        y = np.log(np.maximum(fit[f"kl_{lang}"].to_numpy(), 1e-12))
        X = cov(fit)
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
        resid = y - X @ beta
        Xt = np.clip(cov(tested), X.min(0), X.max(0))
        rt = np.log(np.maximum(tested[f"kl_{lang}"].to_numpy(), 1e-12)) - Xt @ beta
        want = np.array([(1 + (resid >= r).sum()) / (1 + resid.size) if np.isfinite(r)
                         else np.nan for r in rt])
        got = tested[f"p_{lang}"].to_numpy()
        assert np.allclose(got, want, equal_nan=True), lang
        assert np.allclose(tested[f"residual_{lang}"].to_numpy(), rt, equal_nan=True), lang
        assert np.allclose(fit[f"residual_{lang}"].to_numpy(), resid), lang
        finite = want[np.isfinite(want)]
        q = [np.nan if np.isnan(p) else min(1.0, min(pj * finite.size / (finite <= pj).sum()
                                                      for pj in finite if pj >= p))
             for p in want]
        assert np.allclose(tested[f"q_{lang}"].to_numpy(), q, equal_nan=True), lang
        q_all[lang] = np.array(q)
        bar = np.percentile(fit[f"kl_{lang}"].to_numpy(), 95)
        assert table[f"control_p95_{lang}"][0] == pytest.approx(bar)
    for k, v in enumerate(tested["verdict"].to_list()):
        sig = [lang for lang in langs if q_all[lang][k] < fdr]
        if v == "both":
            assert sig == list(langs)
        elif v.startswith("one:"):
            assert v[4:] in sig and len(sig) < len(langs)
        else:
            assert not sig


def test_heldout_pool_is_outside_both_splits_and_parts_are_disjoint(stage_inputs, tmp_path):
    from polyglot_sae.causal.select import heldout_pool

    pairs = pl.read_parquet(stage_inputs["pairs_path"])
    train = set(pl.read_parquet(stage_inputs["train_path"])["pair_id"].to_list())
    score = set(pl.read_parquet(stage_inputs["score_path"])["pair_id"].to_list())
    parts = [set(heldout_pool(pairs, stage_inputs["train_path"], stage_inputs["score_path"],
                              stage_inputs["pairs_path"], 6, 0, part)["pair_id"].to_list())
             for part in range(3)]
    for part in parts:
        assert len(part) == 6 and not part & train and not part & score
    assert not parts[0] & parts[1] and not parts[1] & parts[2] and not parts[0] & parts[2]
    # a leak must show: a score split that misses a held-out pair lets it into the pool
    leaky = tmp_path / "leaky.parquet"
    pl.DataFrame({"pair_id": sorted(score)[1:]}, schema={"pair_id": pl.UInt32}).write_parquet(
        leaky)
    pool = set(heldout_pool(pairs, stage_inputs["train_path"], leaky,
                            stage_inputs["pairs_path"], 100, 0)["pair_id"].to_list())
    assert pool & score == {sorted(score)[0]}


def test_stage_refuses_bad_input(stage_inputs, tmp_path):
    from polyglot_sae.causal.stage import causal_file

    def run(config, **changes):
        return causal_file(**{**stage_inputs, **changes}, out_path=tmp_path / "c.parquet",
                           config=config)

    with pytest.raises(InputError, match="causal.features") as err:
        run(CausalConfig(features=[64], device="cpu"))
    assert "63" in err.value.fix
    with pytest.raises(InputError) as err:
        run(CausalConfig(contexts={"es": []}, device="cpu"))
    assert err.value.field == "causal.contexts.es"
    with pytest.raises(InputError) as err:
        run(CausalConfig(device="cpu"), langs=["en", "eo"])  # no built-in Esperanto contexts
    assert err.value.field == "causal.contexts.eo"
    everything = tmp_path / "all.parquet"
    pl.read_parquet(stage_inputs["pairs_path"]).write_parquet(everything)
    with pytest.raises(InputError, match="no held-out pairs") as err:
        run(CausalConfig(device="cpu"), train_path=everything)
    assert err.value.field == "pair_id"
    assert not (tmp_path / "c.parquet").exists()
