# Paths, wildcard constraints and the per-rule parameter dicts (one dict per rule, so that
# Snakemake's params tracking reruns exactly what a config change affects).
import os
import sys
from pathlib import Path

RUN = config["run"]
CORPUS = config["corpus"]["name"]
MODEL = config["model"]["name"]
N_SHARDS = config["split"]["n_shards"]
SHARDS = [f"{i}-of-{N_SHARDS}" for i in range(N_SHARDS)]
SAES = {s["id"]: s for s in config["saes"]}
METHODS = config["score"]["methods"]
ENV = "../../envs/polyglot-sae.yaml"
SUMMARY = f"results/{RUN}/summary.md"


wildcard_constraints:
    sae=r"[A-Za-z0-9_-]+",
    shard=r"\d+-of-\d+",
    method="exact|seed",
    model=r"[A-Za-z0-9_.-]+",
    corpus=r"[A-Za-z0-9_.-]+",
    run=r"[A-Za-z0-9_.-]+",
    hook=r"[A-Za-z0-9_.]+",


def split_params():
    s = config["split"]
    return {"seed": s["seed"], "train_pairs": s["train_pairs"], "score_pairs": s["score_pairs"]}


def sae_entry(wildcards):
    return SAES[wildcards.sae]


def print_summary(path):
    if Path(path).exists():
        sys.stdout.write("\n" + Path(path).read_text())


# Jobs import the library from src/ whether or not it is pip-installed (conda envs, cluster nodes).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")) if p
)
