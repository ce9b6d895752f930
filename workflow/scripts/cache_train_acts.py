from pathlib import Path

import polars as pl

from polyglot_sae.activations.extract import ExtractConfig
from polyglot_sae.activations.jobs import cache_training_activations, training_key
from polyglot_sae.activations.shared import Sibling
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    cfg = from_mapping(ExtractConfig, snakemake.params.cfg["extract"])
    hook = snakemake.params.cfg["hook"]
    out = Path(snakemake.output.acts)
    model_dir = snakemake.input.model
    pairs = pl.read_parquet(snakemake.input.pairs)
    # the other trained SAEs' hooks (from the config, not the params: adding one must not
    # rerun this job), cached in the same pass for their jobs
    trained = {e["hook"]: e["id"] for e in snakemake.config["saes"] if e["source"] == "train"}

    def sibling(h):
        return Sibling(trained.get(h, h), h, "", {"acts": out.with_name(f"{h}.safetensors")},
                       training_key(model_dir, h, pairs, cfg))

    done = cache_training_activations(model_dir=model_dir, own=sibling(hook),
                                      siblings=[sibling(h) for h in trained if h != hook],
                                      pairs=pairs, cfg=cfg)
    if done["adopted"]:
        log.info("taken from the shared pass of another job")
    else:
        for engine, hooks in done["passes"]:
            log.info("forward pass (%s) to %s", engine, ", ".join(hooks))
        log.info("cached %d training tokens at %s", done["tokens"], ", ".join(done["hooks"]))
