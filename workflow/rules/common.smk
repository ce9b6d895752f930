# Paths, wildcard constraints and the per-rule parameter dicts (one dict per rule, so that
# Snakemake's params tracking reruns exactly what a config change affects).
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
FIGURES = [
    *expand("results/{run}/figures/{sae}.activation_share.png", run=RUN, sae=SAES),
    *expand(
        "results/{run}/figures/{sae}.{method}.bi_curve.png",
        run=RUN,
        sae=SAES,
        method=METHODS,
    ),
    *expand(
        "results/{run}/sweeps/{sae}.{method}.{sweep}.png",
        run=RUN,
        sae=SAES,
        method=METHODS,
        sweep=["beta", "size"] if config["score"]["permutations"] else ["beta"],
    ),
    *expand(
        "results/{run}/figures/{sae}.{method}.pvalues.png",
        run=RUN,
        sae=SAES,
        method=METHODS if config["score"]["permutations"] else [],
    ),
]


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
    return {
        "seed": s["seed"],
        "train_pairs": s["train_pairs"],
        "score_pairs": s["score_pairs"],
    }


def sae_entry(wildcards):
    return SAES[wildcards.sae]


def sae_inputs(wildcards):
    """Trained SAEs need the cached training activations at their hook; others nothing."""
    entry = sae_entry(wildcards)
    if entry["source"] != "train":
        return {}
    return {"acts": f"results/{CORPUS}/train_acts/{MODEL}/{entry['hook']}.safetensors"}


def print_summary(path):
    if Path(path).exists():
        print(f"\n{Path(path).read_text()}")
