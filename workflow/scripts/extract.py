import polars as pl

from polyglot_sae.activations.extract import ExtractConfig, ShardSAE, extract_shard
from polyglot_sae.corpus.pairs import ShardSpec, read_shard
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    pairs = read_shard(snakemake.input.pairs, from_mapping(ShardSpec, p["shard"]))
    if "paraphrase" in snakemake.input.keys():  # the paraphrase of this shard's pairs
        para = pl.read_parquet(snakemake.input.paraphrase)
        pairs = para.filter(pl.col("pair_id").is_in(pairs["pair_id"].unique().implode()))
    saes = [ShardSAE(sae_id, sae_dir, hook, acts, tokens) for sae_id, hook, sae_dir, acts, tokens
            in zip(p["sae_ids"], p["hooks"], snakemake.input.saes, snakemake.output.acts,
                   snakemake.output.tokens)]
    done = extract_shard(model_dir=snakemake.input.model, saes=saes, langs=p["langs"],
                         pairs=pairs, cfg=from_mapping(ExtractConfig, p["extract"]),
                         desc=f"shard {snakemake.wildcards.shard}")
    for engine, hooks in done["passes"]:
        log.info("forward pass (%s) to %s", engine, ", ".join(hooks))
    for sae_id, n in done["rows"].items():
        log.info("wrote %d activations of %s", n, sae_id)
