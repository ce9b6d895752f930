"""Shared fixtures: a tiny random model and SAE built from configs, and Snakemake runs in temp dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SWORD_DIR = Path("/usr/share/sword")
HAS_SWORD = (SWORD_DIR / "mods.d" / "engKJV2006eb.conf").exists() and (
    SWORD_DIR / "mods.d" / "spaRV1909eb.conf").exists()
needs_sword = pytest.mark.skipif(
    not HAS_SWORD and not os.environ.get("CI"),
    reason="Debian sword-text-kjv and sword-text-sparv are not installed (CI installs them)")


# pytest-xdist (`-n auto`, pyproject): the tests of one file share its module fixtures (a
# running cluster, a converted model), so a file runs in one worker, except the files below,
# whose tests each run a whole DAG of their own. The slurm tier and test_workflow share one
# scope: the slurm fixture runs the session's tiny DAG (tiny_dag) while its own jobs queue,
# using the CPU that its waits on SLURM leave, and test_workflow then reads that DAG. Scopes are
# handed out in collection order, so the long ones go first and the short ones fill in.
LONG_FILES = ("test_slurm.py", "test_workflow.py", "test_languages.py", "test_faults.py",
              "test_layer_sweep.py", "test_slow_gemma.py", "test_hub.py")
SPLIT_FILES = ("test_languages.py",)
JOINED_FILES = {"test_slurm.py": "tiny-dag", "test_workflow.py": "tiny-dag", "test_api.py": "tiny-dag",
                "test_explorer.py": "tiny-dag"}


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(_file(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Scopes by file (xdist's own `loadgroup` cannot tag tests under pytest 9, whose node ids
    it no longer rewrites), in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if _file(nodeid) in SPLIT_FILES:
                return nodeid
            return JOINED_FILES.get(_file(nodeid), nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False
    return FileScopes(config, log)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from polyglot_sae.model.load import ModelConfig, prepare_model

    return prepare_model(ModelConfig(source="tiny", tiny={"seed": 1}),
                         tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from polyglot_sae.model.load import load_model

    return load_model(tiny_model_dir)


def make_jumprelu(d_in: int, d_sae: int, seed: int = 0, hook: str = "blocks.1.hook_resid_post"):
    """A random JumpReLU SAE whose thresholds let a few percent of latents fire."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    torch.manual_seed(seed)
    cfg = JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 1.0 / d_in**0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.threshold.fill_(1.0)
    return sae


N_LAYERS = 4  # of tiny_gemma


def tiny_gemma(name: str, **overrides) -> HookedTransformer:
    """A 4-layer random model with TL's config of `name` (local and global layers alternating,
    a window of 4 tokens), every norm weight and bias moved off its default."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    cfg = get_pretrained_model_config(name).to_dict()
    for derived in ("n_params", "d_vocab_out", "model_name"):
        cfg.pop(derived)
    cfg.update(n_layers=N_LAYERS, d_model=64, n_heads=4, d_head=16, n_key_value_heads=2,
               d_mlp=96, d_vocab=50, n_ctx=64, rotary_dim=16, attn_scale=4.0, window_size=4,
               attn_types=["local", "global"] * (N_LAYERS // 2), init_weights=True, seed=0,
               tokenizer_name=None)
    cfg.update(overrides)
    model = HookedTransformer(HookedTransformerConfig(**cfg))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param_name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if param_name.endswith(".w"):  # norms (TL's weights, +1 already folded in)
                p.copy_(1 + 0.3 * noise)
            elif param_name.rsplit(".", 1)[-1].lstrip("_").startswith("b_"):
                p.copy_(0.1 * noise)
            else:  # large enough for attention scores of several units: the soft-cap bends
                p.copy_(2 * noise / p.shape[-2] ** 0.5)
    return model.eval()



@pytest.fixture(scope="session")
def real_gemma_dir(tmp_path_factory, worker_id):
    """The converted Gemma-3-270M: the default run's when present, else converted from the
    GGUF (~1 min) once for the whole session, whichever xdist worker asks first (a lock in the
    workers' shared temporary folder), so that a fresh clone converts it once, not per file."""
    from filelock import FileLock

    from polyglot_sae.model.load import ModelConfig, prepare_model

    prepared = ROOT / "resources" / "models" / "gemma-3-270m"
    if (prepared / "polyglot_model.json").exists():
        return prepared
    # under xdist the workers' folders share this session's parent; alone, the session's own
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    out = shared / "gemma-3-270m"
    with FileLock(str(shared / "gemma-3-270m.lock")):
        if not (out / "polyglot_model.json").exists():
            prepare_model(ModelConfig(), out)
    return out

def sample_corpus(n: int = 40) -> dict[str, list[str]]:
    """A small aligned corpus with repeated content words, so some features are shared."""
    words_en = ["God", "water", "king", "house", "light", "bread", "city", "river"]
    words_es = ["Dios", "agua", "rey", "casa", "luz", "pan", "ciudad", "río"]
    en, es = [], []
    for i in range(n):
        a, b = i % len(words_en), (3 * i + 1) % len(words_en)
        en.append(f"The {words_en[a]} and the {words_en[b]} were seen on day {i}.")
        es.append(f"El {words_es[a]} y la {words_es[b]} fueron vistos el día {i}.")
    return {"en": en, "es": es}


def expected_beta_sweep(scores, beta_ranks, top_k: int):
    """The beta sweep computed from a score table (polyglot_sae.score.bilingual's columns) alone: for
    each beta rank r, beta_r = -(jsd_(r) - jsd_min) / (idaf_max - idaf_min) over the alive
    features (0 when idaf is constant), bi = jsd + beta_r * idaf ranked ascending (ties by
    feature id); its top-k's Jaccard overlap with the table's own top-k (rank < k) and Kendall's
    tau with the table's bi_score."""
    import numpy as np
    import polars as pl
    from scipy.stats import kendalltau

    alive = scores.filter(~pl.col("dead"))
    jsd, idaf = alive["jsd"].to_numpy(), alive["idaf"].to_numpy()
    reference = set(alive.filter(pl.col("rank") < top_k)["feature_id"].to_list())
    rows = []
    for r in beta_ranks:
        spread = idaf.max() - idaf.min()
        beta = -(np.sort(jsd)[min(r, jsd.size - 1)] - jsd.min()) / spread if spread else 0.0
        bi = jsd + beta * idaf
        top = set(alive.with_columns(bi=bi).sort("bi", "feature_id")["feature_id"][:top_k])
        rows.append({"beta_rank": r, "beta": beta,
                     "jaccard_topk": len(reference & top) / len(reference | top),
                     "kendall_tau": kendalltau(alive["bi_score"].to_numpy(), bi).statistic})
    return pl.DataFrame(rows, schema={"beta_rank": pl.Int64, "beta": pl.Float64,
                                      "jaccard_topk": pl.Float64, "kendall_tau": pl.Float64})


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args: str, timeout: int = 600,
                  check: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if check and proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in (workdir / "logs").rglob("*.log")
                         if "Error" in p.read_text() or "Traceback" in p.read_text())
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}\n{logs}")
    return proc


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> tuple[Path, str]:
    """The whole default DAG of test_workflow.tiny_config through the local profile, run once
    per session (its users, test_workflow and the slurm tier, share an xdist scope); its workdir
    and Snakemake's output. Tests copy it before changing anything."""
    from test_workflow import tiny_config

    workdir = tmp_path_factory.mktemp("tiny-dag")
    write_config(workdir, tiny_config(workdir))
    proc = run_snakemake(workdir, "--profile", str(ROOT / "profiles" / "local"), "--cores", "2",
                         timeout=2400)
    return workdir, proc.stdout


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def proc_pids(match: Callable[[Path], bool]) -> list[int]:
    """PIDs of the processes whose /proc/<pid> directory satisfies `match` (a process that ends
    while `match` reads it is skipped)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and match(proc):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def script_pids(workdir: Path, script: str) -> list[int]:
    """Processes in `workdir` running a copy of a rule's script (Snakemake runs
    `.snakemake/scripts/tmp<random>.<name>.py`), e.g. script=".extract.py"."""

    def runs_script(proc: Path) -> bool:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return (script in cmdline and "snakemake " not in cmdline
                and Path(os.readlink(proc / "cwd")) == workdir)

    return proc_pids(runs_script)
