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
    config["model"]["tiny"] = {"seed": 1}  # outside the lean forward: one pass for all hooks
    config["score"].update(methods=["paired"])
    config["mcs"].update(widths=[])
    config["pages"] = {**config["pages"], "screenshots": False}
    config["logit_lens"].update(null_directions=8)
    config["layers"] = {"bootstrap": 50}
    config["causal"] = {"enabled": False}  # as in the preset: the profile does not read it
    config["align"] = {"enabled": False}  # the word level is the default DAG's test
    return config


# What the tests read: the profile and its figure, and the summary (SAE quality, the paired
# classes and the logit lens on the way); pages and per-SAE figures are the default DAG's test.
TARGETS = ("results/tiny/sweeps/layers.png", "results/tiny/summary.md")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    write_config(workdir, sweep_config(workdir))
    run_snakemake(workdir, "--cores", "2", *TARGETS, timeout=1800)
    return workdir


def _passes(logs) -> tuple[list[str], int]:
    """The forward passes logged by a set of jobs, and how many jobs took a shared one."""
    texts = [p.read_text() for p in logs]
    passes = [line.split("forward pass ", 1)[1] for t in texts for line in t.splitlines()
              if "forward pass" in line]
    return passes, sum("from the shared pass" in t for t in texts)


def test_one_forward_pass_per_shard_feeds_every_hook(sweep):
    shards = json.loads((sweep / "results" / "toy" / "shards.json").read_text())["shards"]
    assert shards
    for shard in shards:
        # the tiny model is outside the lean forward: one TransformerLens pass for all three,
        # run by the first job of the shard; the other two took their tables from it
        passes, adopted = _passes((sweep / "logs" / "tiny" / "extract").glob(f"*/{shard}.log"))
        assert len(passes) == 1 and passes[0].startswith("(transformer_lens) to "), passes
        assert sorted(passes[0].split(" to ")[1].split(", ")) == sorted(SAES.values())
        assert adopted == 2
        passes, adopted = _passes((sweep / "logs" / "tiny" / "extract_paraphrase").glob(
            f"*/{shard}.log"))
        assert len(passes) == 1 and adopted == 2
    passes, adopted = _passes((sweep / "logs" / "toy" / "train_acts" / "tiny").glob("*.log"))
    assert len(passes) == 1 and adopted == 2
    left = [f for f in (sweep / "results").rglob("*") if ".shared_pass" in f.parts
            and f.suffix in (".parquet", ".safetensors")]
    assert not left  # every shared table was taken by its job


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
    jobs = planned_jobs(workdir, *TARGETS)
    n_shards = len(json.loads((sweep / "results" / "toy" / "shards.json").read_text())["shards"])
    # the new hook's cache, SAE, extraction and analyses, and the profile and summary
    assert jobs["cache_train_acts"] == 1 and jobs["extract"] == n_shards
    for rule in ("build_sae", "evaluate_sae", "reduce", "reduce_paraphrase",
                 "paired_stats", "paired_classes", "logit_lens", "layer_profile", "layer_figure",
                 "summary"):
        assert jobs[rule] == 1, (rule, jobs)
    # and nothing of the other three SAEs: every other rule runs once, for the new one
    assert all(n == 1 for rule, n in jobs.items() if not rule.startswith("extract")), jobs
    assert jobs["extract_paraphrase"] == n_shards


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


@pytest.mark.parametrize("preset, n_saes", [("layer-sweep.yaml", 6), ("layer-sweep-gemma2.yaml", 6)])
def test_sweep_presets_plan_the_profile(tmp_path, preset, n_saes):
    """The offline preset and the hub one (GemmaScope, OPUS Books) plan without the hub."""
    from conftest import ROOT

    shutil.copy(ROOT / "configs" / preset, tmp_path / "config.yaml")
    jobs = planned_jobs(tmp_path)
    trained = "gemma2" not in preset
    # pretrained SAEs come from the hub's fetch rule (workflow/rules/hub.smk), trained ones are built
    built = jobs.get("build_sae" if trained else "fetch_sae", 0)
    assert built == n_saes and jobs["layer_profile"] == jobs["layer_figure"] == 1
    # one training cache per hook (sharing one pass at run time), none for pretrained SAEs
    assert jobs.get("cache_train_acts", 0) == (n_saes if trained else 0)
