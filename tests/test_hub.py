"""The hub path against a local stand-in of the hub (tests/hub_standin.py) serving the real
Gemma-3-270M as google/gemma-3-270m, an SAE in GemmaScope 2's format as
google/gemma-scope-2-270m-pt (resid_post/layer_12_width_16k_l0_medium) and a small OPUS-format
dataset as Helsinki-NLP/opus_books: the fetch rules through Snakemake, then one downstream job
offline (an extraction, compared with the local model and SAE), a second run that fetches
nothing, a changed revision that refetches, and the errors of bad input.

Not the whole hub preset end to end: on 2 cores that is the default run's ~20 minutes; the
fetch stage plus the extraction of one shard cover what differs from the offline path.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import polars as pl
import pytest
import torch
from conftest import ROOT, make_jumprelu, run_snakemake, sample_corpus, write_config
from hub_standin import start
from test_workflow import planned_jobs

from polyglot_sae.errors import InputError

pytestmark = pytest.mark.slow
HOOK = "blocks.12.hook_resid_post"
GS2 = ("gemma-scope-2-270m-pt-res", "layer_12_width_16k_l0_medium")
GS2_FOLDER = "google/gemma-scope-2-270m-pt/resid_post/layer_12_width_16k_l0_medium"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json")


@pytest.fixture(scope="module")
def local_model_dir(real_gemma_dir):
    return real_gemma_dir


@pytest.fixture(scope="module")
def local_sae():
    """The default run's trained SAE when present, else a random JumpReLU SAE of the same shape
    (CI has no finished run); apply_b_dec_to_input either way, so the GemmaScope conversion
    below has something to fold."""
    from polyglot_sae.model.saes import load_sae

    trained = ROOT / "resources" / "saes" / "gemma-3-270m" / "l12-jumprelu-2k"
    if (trained / "cfg.json").exists():
        return load_sae(trained)
    sae = make_jumprelu(640, 2048, hook=HOOK)
    with torch.no_grad():
        sae.b_dec.normal_(0, 50.0)
        sae.threshold.fill_(40.0)
    return sae.eval()


def write_gemmascope2(sae, folder, layer: int) -> None:
    """An sae-lens JumpReLU SAE in GemmaScope 2's hub format: params.safetensors with w_enc
    [d_in, d_sae], w_dec, b_enc, b_dec, threshold, and the config.json sae-lens' gemma_3 loader
    reads. GemmaScope encodes x @ w_enc + b_enc (no b_dec subtracted first): an SAE that
    subtracts it gets b_dec @ W_enc folded into b_enc."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        b_enc = sae.b_enc - (sae.b_dec @ sae.W_enc if sae.cfg.apply_b_dec_to_input else 0)
        tensors = {"w_enc": sae.W_enc, "w_dec": sae.W_dec, "b_enc": b_enc, "b_dec": sae.b_dec,
                   "threshold": sae.threshold}
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()},
                  folder / "params.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "architecture": "jump_relu", "model_name": "gemma-v3-270m-pt", "width": sae.cfg.d_sae,
        "hf_hook_point_in": f"model.layers.{layer}.output", "type": "sae"}))


@pytest.fixture(scope="module")
def hub(tmp_path_factory, local_model_dir, local_sae):
    """The stand-in, serving the three repos (and a gated one); stopped after the module."""
    root = tmp_path_factory.mktemp("hub")
    model = root / "models" / "google" / "gemma-3-270m"
    model.mkdir(parents=True)
    for name in MODEL_FILES:  # linked, not copied: 1 GB
        (model / name).symlink_to(local_model_dir / name)
    write_gemmascope2(local_sae, root / "models" / GS2_FOLDER, layer=12)
    opus = root / "datasets" / "Helsinki-NLP" / "opus_books"
    (opus / "en-es").mkdir(parents=True)
    texts = sample_corpus(24)
    pl.DataFrame({"id": [str(i) for i in range(24)],
                  "translation": [{"en": en, "es": es} for en, es in zip(texts["en"], texts["es"])]}
                 ).write_parquet(opus / "en-es" / "train-00000-of-00001.parquet")
    (opus / "README.md").write_text("---\nconfigs:\n- config_name: en-es\n  data_files:\n"
                                    "  - split: train\n    path: en-es/train-*\n---\n")
    (root / "models" / "google" / "gated-model").mkdir(parents=True)
    (root / "models" / "google" / "gated-model" / "config.json").write_text("{}")
    standin, server = start(root, gated={"google/gated-model"})
    yield standin
    server.shutdown()


@pytest.fixture
def in_process_hub(hub, monkeypatch, tmp_path):
    """huggingface_hub in this process pointed at the stand-in (its constants are read at import,
    so HF_ENDPOINT alone would come too late), with an empty cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return hub


def hub_config(workdir):
    return {
        "run": "hub",
        "corpus": {"name": "opus-hub", "source": "opus_books", "langs": ["en", "es"],
                   "opus": {"name": "Helsinki-NLP/opus_books", "config": "en-es", "split": "train"}},
        "split": {"seed": 0, "train_pairs": 0, "score_pairs": 8, "shard_pairs": 8},
        "model": {"name": "gemma-3-270m-hf", "source": "hf", "tl_name": "google/gemma-3-270m"},
        "extract": {"batch_size": 8, "max_tokens": 64},
        "saes": [{"id": "gs2", "hook": HOOK, "source": "pretrained", "release": GS2[0],
                  "sae_id": GS2[1]}],
        "score": {"methods": ["paired"]},
    }


FETCHED = ("resources/models/gemma-3-270m-hf", "resources/saes/gemma-3-270m-hf/gs2",
           "resources/corpora/opus-hub/opus.parquet")
ACTS = "results/hub/acts/gs2/00000.parquet"


def run_hub(workdir, hub, *targets, check=True):
    """Snakemake with the stand-in as the hub (and an empty hub cache of its own)."""
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(workdir / "hf-home")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_snakemake(workdir, "--cores", "2", *targets, check=check, timeout=900)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def fetched(hub, tmp_path_factory):
    """The fetch rules, then one extraction (offline) with the stand-in up: its workdir and the
    requests each phase sent to the hub."""
    workdir = tmp_path_factory.mktemp("hub-run")
    write_config(workdir, hub_config(workdir))
    hub.requests.clear()
    fetch = run_hub(workdir, hub, *FETCHED)
    fetch_requests = list(hub.requests)
    hub.requests.clear()
    run_hub(workdir, hub, ACTS)
    return workdir, fetch.stdout + fetch.stderr, fetch_requests, list(hub.requests)


def test_fetch_rules_run_locally_and_record_provenance(fetched, hub):
    workdir, out, requests, _ = fetched
    for rule in ("fetch_model", "fetch_sae", "fetch_corpus"):
        assert f"localrule {rule}:" in out, out[-3000:]  # localrules: where Snakemake runs
    repos = {p.split("/resolve/")[0].lstrip("/") for _, p in requests if "/resolve/" in p}
    assert repos == {"google/gemma-3-270m", "google/gemma-scope-2-270m-pt",
                     "datasets/Helsinki-NLP/opus_books"}, repos
    model_repo = hub.repo("models", "google/gemma-3-270m")
    spec = json.loads((workdir / FETCHED[0] / "polyglot_model.json").read_text())
    assert spec["hub"]["commit"] == model_repo.commit and spec["hub"]["revision"] == "main"
    # every file the hub holds, hashed as served (the hub's LFS oid is the sha256)
    assert {k: v["sha256"] for k, v in spec["hub"]["files"].items()} == {
        k: f.sha256 for k, f in model_repo.files.items()}
    sae_repo = hub.repo("models", "google/gemma-scope-2-270m-pt")
    prov = json.loads((workdir / FETCHED[1] / "fetch.json").read_text())
    assert prov["commit"] == sae_repo.commit
    assert prov["files"][f"{GS2_FOLDER.split('/', 2)[2]}/params.safetensors"]["sha256"] == (
        sae_repo.files[f"{GS2_FOLDER.split('/', 2)[2]}/params.safetensors"].sha256)
    assert prov["neuronpedia"] == "gemma-3-270m/12-gemmascope-2-res-16k"
    corpus = pl.read_parquet(workdir / FETCHED[2])
    assert corpus.height == 24 and corpus["translation"][3]["es"] == sample_corpus(24)["es"][3]
    from polyglot_sae.atomic_io import read_metadata

    assert read_metadata(workdir / FETCHED[2])["commit"] == hub.repo(
        "datasets", "Helsinki-NLP/opus_books").commit


def test_downstream_jobs_read_only_resources(fetched, local_model_dir, local_sae):
    """The extraction ran without a request to the hub, and its table equals the local model's
    and SAE's (the GGUF conversion's weights served as the hub model, the SAE through the
    GemmaScope 2 format and sae-lens' gemma_3 loader) to float tolerance."""
    from polyglot_sae.activations.extract import ExtractConfig, extract_sparse
    from polyglot_sae.corpus.pairs import shard_block
    from polyglot_sae.model.load import load_model

    workdir, _, _, requests = fetched
    assert requests == []
    got = pl.read_parquet(workdir / ACTS)
    pairs = shard_block(pl.read_parquet(workdir / "results/opus-hub/split/score.parquet"), 8, 0)
    model = load_model(local_model_dir)
    want = extract_sparse(model, local_sae, HOOK, pairs, ExtractConfig(batch_size=8, max_tokens=64))
    keys = ["pair_id", "lang", "token_pos", "feature_id"]
    joined = want.join(got, on=keys, how="full", suffix="_hub", coalesce=True).fill_null(0.0)
    assert joined.height > 1000 and got["pair_id"].n_unique() == 8
    # a latent within rounding of its threshold may fire on one side only: vanishingly few
    scale = float(want["value"].max())
    off = (joined["value"] - joined["value_hub"]).abs()
    assert (off > 1e-4 * scale).sum() <= joined.height * 1e-3, joined.filter(off > 1e-4 * scale)


def test_a_second_run_fetches_nothing(fetched, hub):
    workdir, *_ = fetched
    hub.requests.clear()
    proc = run_hub(workdir, hub, *FETCHED, ACTS)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert hub.requests == []


def test_a_changed_revision_refetches_only_its_artifact(fetched, hub, tmp_path):
    workdir, *_ = fetched
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True, symlinks=True)
    config = hub_config(tmp_path)
    config["saes"][0]["revision"] = hub.repo("models", "google/gemma-scope-2-270m-pt").commit
    write_config(tmp_path, config)
    jobs = planned_jobs(tmp_path, *FETCHED, ACTS)
    assert jobs == {"fetch_sae": 1, "extract": 1}, jobs


def test_an_offline_job_that_reaches_for_the_hub_names_the_fetch_stage(fetched, hub, tmp_path):
    """A model folder whose spec says "from the hub" (as prepare_model once wrote for hf models):
    the extraction's TransformerLens load asks the hub, which the job may not, with the
    stand-in up and HF_ENDPOINT set (so offline mode is what stops it)."""
    workdir, *_ = fetched
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True, symlinks=True)
    spec_path = tmp_path / FETCHED[0] / "polyglot_model.json"
    spec = json.loads(spec_path.read_text())
    spec.pop("hub")
    spec_path.write_text(json.dumps(spec))
    (tmp_path / ACTS).unlink()
    hub.requests.clear()
    proc = run_hub(tmp_path, hub, ACTS, check=False)
    assert proc.returncode != 0 and hub.requests == []
    log = (tmp_path / "logs").rglob("*.log")
    text = "\n".join(p.read_text() for p in log)
    assert "rule extract: hub: it reached for the hub" in text, text[-3000:]
    assert "run the fetch stage fetch_model first" in text


# -- bad input -------------------------------------------------------------------------------


def test_unknown_release_and_sae_id_list_the_nearest():
    from polyglot_sae.hub.releases import resolve

    with pytest.raises(InputError, match="release") as err:
        resolve("gemma-scope-2-270m-pt-resid", GS2[1])
    assert "gemma-scope-2-270m-pt-res" in err.value.problem
    with pytest.raises(InputError, match="sae_id") as err:
        resolve(GS2[0], "layer_12_width_16k_l0_meduim")
    assert "'layer_12_width_16k_l0_medium'" in err.value.problem.split("nearest:")[1]


def test_a_misspelt_sae_id_fails_the_plan(tmp_path):
    config = hub_config(tmp_path)
    config["saes"][0]["sae_id"] = "layer_12_width_16k_l0_meduim"
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config saes[gs2]: sae_id: release gemma-scope-2-270m-pt-res has no SAE" in out, out[-2000:]
    assert "layer_12_width_16k_l0_medium" in out


@pytest.mark.parametrize("repo, problem", [("google/no-such-model", "no repo google/no-such-model"),
                                           ("google/gated-model", "google/gated-model on")])
def test_missing_and_gated_repos_name_the_repo_and_hf_token(in_process_hub, tmp_path, repo, problem):
    from polyglot_sae.hub.fetch import fetch_model

    with pytest.raises(InputError, match="HF_TOKEN") as err:
        fetch_model(repo, "main", tmp_path / "m", {"source": "hf"})
    assert problem in str(err.value)
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_an_sae_of_another_hook_or_width_is_refused_at_fetch(in_process_hub, tmp_path):
    from polyglot_sae.hub.fetch import fetch_sae
    from polyglot_sae.hub.releases import resolve

    entry = resolve(*GS2)
    with pytest.raises(InputError, match="trained at blocks.12.hook_resid_post"):
        fetch_sae(entry, "main", "blocks.9.hook_resid_post", tmp_path / "a", d_model=640)
    with pytest.raises(InputError, match="width 640 but the model's residual stream has width 1152"):
        fetch_sae(entry, "main", HOOK, tmp_path / "b", d_model=1152)
    assert not list(tmp_path.iterdir())  # neither SAE written, no download left behind


def test_pinned_fetch_equals_sae_lens_own_loader(in_process_hub, tmp_path, local_sae):
    """sae-lens' unpinned GemmaScope 2 loader (raw HTTP range requests for the header) and the
    pinned fetch read the same SAE: same config, same weights; and it encodes like the local SAE."""
    from sae_lens import SAE

    from polyglot_sae.hub.fetch import fetch_sae
    from polyglot_sae.hub.releases import resolve
    from polyglot_sae.model.saes import load_sae

    ours = load_sae(fetch_sae(resolve(*GS2), "main", HOOK, tmp_path / "sae", d_model=640))
    theirs = SAE.from_pretrained(*GS2, device="cpu")
    assert ours.cfg.to_dict() == theirs.cfg.to_dict()
    for name, tensor in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
    x = torch.randn(64, 640) * 400
    np.testing.assert_allclose(ours.encode(x).detach().numpy(), local_sae.encode(x).detach().numpy(),
                               rtol=1e-4, atol=1e-3)


def test_presets_plan_with_fetch_rules(tmp_path):
    """The GemmaScope 2 presets plan without the hub: fetch rules for the model and each SAE,
    nothing trained; the widths form one MCS ladder, the layers a profile."""
    expected = {"gemmascope2-270m.yaml": 1, "gemmascope2-270m-widths.yaml": 3,
                "gemmascope2-270m-layers.yaml": 6}
    for preset, n_saes in expected.items():
        workdir = tmp_path / preset
        workdir.mkdir()
        shutil.copy(ROOT / "configs" / preset, workdir / "config.yaml")
        jobs = planned_jobs(workdir)
        assert jobs["fetch_model"] == 1 and jobs["fetch_sae"] == n_saes, (preset, jobs)
        assert not {"prepare_model", "build_sae", "cache_train_acts", "fetch_corpus"} & set(jobs)
        if "widths" in preset:
            assert jobs["mcs"] == 3
        if "layers" in preset:
            assert jobs["layer_profile"] == 1


def test_neuronpedia_links_come_from_the_release_table():
    from polyglot_sae.hub.plan import page_settings
    from polyglot_sae.hub.releases import resolve
    from polyglot_sae.report.page_data import FeaturePagesConfig

    pages = {"neuronpedia_url": None, "top_n": 5}
    linked = page_settings(pages, resolve(*GS2))["neuronpedia_url"]
    assert linked == "https://www.neuronpedia.org/gemma-3-270m/12-gemmascope-2-res-16k/{feature}"
    FeaturePagesConfig(neuronpedia_url=linked)  # a template the pages accept
    assert page_settings(pages, resolve(GS2[0], "layer_12_width_16k_l0_big")) is pages  # no id
    assert page_settings(pages, None) is pages  # not pretrained: unchanged params
