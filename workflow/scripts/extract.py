from pathlib import Path

import polars as pl

from polyglot_sae.activations.extract import ExtractConfig
from polyglot_sae.activations.jobs import extract_shard, extraction_key
from polyglot_sae.activations.shared import Sibling
from polyglot_sae.corpus.pairs import ShardSpec, read_shard
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    cfg = from_mapping(ExtractConfig, p["extract"])
    pairs = read_shard(snakemake.input.pairs, from_mapping(ShardSpec, p["shard"]))
    if "paraphrase" in snakemake.input.keys():  # the paraphrase of this shard's pairs
        para = pl.read_parquet(snakemake.input.paraphrase)
        pairs = para.filter(pl.col("pair_id").is_in(pairs["pair_id"].unique().implode()))
    model_dir, saes_dir = snakemake.input.model, Path(snakemake.input.sae).parent
    out = {k: Path(snakemake.output[k]) for k in ("acts", "tokens")}

    def sibling(entry):  # another SAE of the run (read from the config, not the params: adding
        # one must not rerun this job) where its own extraction job would write
        sae_dir = str(saes_dir / entry["id"])
        return Sibling(entry["id"], entry["hook"], sae_dir,
                       {k: v.parents[1] / entry["id"] / v.name for k, v in out.items()},
                       extraction_key(model_dir, sae_dir, entry["hook"], pairs, p["langs"], cfg)
                       if Path(sae_dir).exists() else "")

    own = sibling({"id": p["sae_id"], "hook": p["hook"]})
    siblings = [sibling(e) for e in snakemake.config["saes"] if e["id"] != p["sae_id"]]
    done = extract_shard(model_dir=model_dir, own=own, siblings=siblings, langs=p["langs"],
                         pairs=pairs, cfg=cfg, desc=f"{p['sae_id']} {snakemake.wildcards.shard}")
    if done["adopted"]:
        log.info("taken from the shared pass of another job (key %s)", own.key[:12])
    else:
        for engine, hooks in done["passes"]:
            log.info("forward pass (%s) to %s", engine, ", ".join(hooks))
        for sae_id, n in done["rows"].items():
            log.info("wrote %d activations of %s", n, sae_id)
