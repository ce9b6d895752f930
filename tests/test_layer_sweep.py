"""The hook-point sweep through Snakemake on the tiny model: three SAEs at three hooks (two
resid_post, one mlp_out) served by one forward pass per shard, their tables equal to one hook
at a time, the layer profile; adding a fourth hook plans only what it needs."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import run_snakemake, write_config
from test_workflow import planned_jobs, tiny_config

pytestmark = pytest.mark.integration

SAES = {"l0": "blocks.0.hook_resid_post", "l1": "blocks.1.hook_resid_post",
        "l1-mlp": "blocks.1.hook_mlp_out"}


def sweep_config(workdir, saes=SAES):
    config = tiny_config(workdir, shard_pairs=30)  # one shard: fewer jobs
    config["sweeps"].update(ablation_sizes=[10])
    config["saes"] = [{"id": sae, "hook": hook, "source": "train",
                       "train": {"d_sae": 48, "epochs": 2.0, "batch_size": 128}}
                      for sae, hook in saes.items()]
    config["score"].update(methods=["paired"])
    config["mcs"].update(widths=[])
    config["pages"] = {**config["pages"], "screenshots": False}
    config["logit_lens"].update(null_directions=8)
    config["layers"] = {"bootstrap": 50}
    return config


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    write_config(workdir, sweep_config(workdir))
    run_snakemake(workdir, "--cores", "2", timeout=1800)
    return workdir


def test_one_forward_pass_per_shard_feeds_every_hook(sweep):
    shards = json.loads((sweep / "results" / "toy" / "shards.json").read_text())["shards"]
    for shard in shards:
        log = (sweep / "logs" / "tiny" / "extract" / f"{shard}.log").read_text()
        # the tiny model is outside the lean forward: one TransformerLens pass for all three
        passes = [line for line in log.splitlines() if "forward pass" in line]
        assert len(passes) == 1 and passes[0].endswith(
            "forward pass (transformer_lens) to " + ", ".join(SAES.values())), log
    train_log = next((sweep / "logs" / "toy" / "train_acts").glob("*.log")).read_text()
    assert train_log.count("forward pass") == 1


def test_tables_equal_one_hook_at_a_time(sweep):
    from polyglot_sae.activations.extract import ExtractConfig, extract_sparse
    from polyglot_sae.model.load import load_model
    from polyglot_sae.model.saes import load_sae

    config = yaml.safe_load((sweep / "config.yaml").read_text())
    model = load_model(sweep / "resources" / "models" / "tiny")
    tokens = pl.read_parquet(sweep / "results" / "tiny" / "tokens" / "l0" / "00000.parquet")
    pairs = pl.read_parquet(sweep / "results" / "toy" / "pairs.parquet").filter(
        pl.col("pair_id").is_in(tokens["pair_id"].unique().implode()))
    for sae_id, hook in SAES.items():
        sae = load_sae(sweep / "resources" / "saes" / "tiny" / sae_id)
        alone = extract_sparse(model, sae, hook, pairs, ExtractConfig(**config["extract"]))
        shared = pl.read_parquet(sweep / "results" / "tiny" / "acts" / sae_id / "00000.parquet")
        assert alone.height > 0 and shared.equals(alone), sae_id


def _iou(maxacts: pl.DataFrame, a: str, b: str) -> float:
    """Mean over pairs of |A & B| / |A | B|, by Python sets."""
    active = maxacts.filter(pl.col("value") > 0)
    sets = {}
    for pair, lang, feature in active.select("pair_id", "lang", "feature_id").iter_rows():
        sets.setdefault((pair, lang), set()).add(feature)
    pairs = {p for p, _ in sets}
    values = [len(sets.get((p, a), set()) & sets.get((p, b), set()))
              / len(sets.get((p, a), set()) | sets.get((p, b), set())) for p in pairs]
    return float(np.mean(values))


def test_layer_profile_table_figure_and_summary(sweep):
    res = sweep / "results" / "tiny"
    table = pl.read_parquet(res / "sweeps" / "layers.parquet")
    # forward order: layer 0's residual, then layer 1's MLP output, then layer 1's residual
    assert table["hook"].to_list() == [SAES["l0"], SAES["l1-mlp"], SAES["l1"]]
    for row in table.iter_rows(named=True):
        maxacts = pl.read_parquet(res / "maxacts" / f"{row['sae']}.parquet")
        assert row["iou_en_es"] == pytest.approx(_iou(maxacts, "en", "es"), abs=1e-12)
        for name in ("iou_en_es", "iou_para", "iou_random"):
            assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"]
        paired = pl.read_parquet(res / "scores" / f"{row['sae']}.paired.parquet")
        assert row["n_concept"] == (paired["class"] == "concept").sum()
        quality = json.loads((res / "sae_quality" / f"{row['sae']}.json").read_text())
        assert min(q["fve"] for q in quality["per_language"].values()) <= row["fve"] <= max(
            q["fve"] for q in quality["per_language"].values())
    assert (res / "sweeps" / "layers.png").stat().st_size > 10_000
    assert "Layer profile over 3 hooks" in (res / "summary.md").read_text()


def test_a_fourth_hook_plans_only_its_own_work(sweep, tmp_path):
    workdir = tmp_path / "grown"
    shutil.copytree(sweep, workdir, symlinks=True)
    config = sweep_config(workdir, {**SAES, "l0-mlp": "blocks.0.hook_mlp_out"})
    config["corpus"] = yaml.safe_load((sweep / "config.yaml").read_text())["corpus"]
    write_config(workdir, config)
    jobs = planned_jobs(workdir)
    n_shards = len(json.loads((sweep / "results" / "toy" / "shards.json").read_text())["shards"])
    # the one pass reruns (writing the same tables for the other hooks, read as `ancient`) ...
    assert jobs["cache_train_acts"] == 1 and jobs["extract"] == n_shards
    # ... but only the new hook's SAE and analyses, and the profile and summary across hooks
    for rule in ("check_sae", "build_sae", "evaluate_sae", "reduce", "reduce_paraphrase",
                 "paired_stats", "paired_classes", "logit_lens", "layer_profile", "layer_figure",
                 "summary"):
        assert jobs[rule] == 1, (rule, jobs)


def test_two_saes_at_one_hook_are_refused_for_the_profile(tmp_path):
    config = sweep_config(tmp_path)
    config["saes"].append({"id": "l1-wide", "hook": SAES["l1"], "source": "train",
                           "train": {"d_sae": 96}})
    config["layers"]["saes"] = ["l0", "l1", "l1-wide"]
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("config saes[l1] and saes[l1-wide]: hook: both read blocks.1.hook_resid_post "
            "(d_sae 48 and 96); the layer profile compares one SAE per hook. Fix: list one SAE "
            "per hook in layers.saes") in out, out[-3000:]
