import polars as pl

from polyglot_sae.corpus.pairs import ShardSpec, read_shard
from polyglot_sae.activations.extract import ExtractConfig, extract_shard
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    pairs = read_shard(snakemake.input.pairs, from_mapping(ShardSpec, p["shard"]))
    langs = p["langs"]
    if "paraphrase" in snakemake.input.keys():  # the paraphrase of this shard's pairs
        para = pl.read_parquet(snakemake.input.paraphrase)
        pairs = para.filter(pl.col("pair_id").is_in(pairs["pair_id"].unique().implode()))
    n = extract_shard(
        model_dir=snakemake.input.model, sae_dir=snakemake.input.sae, hook=p["hook"],
        sae_id=p["sae_id"], langs=langs, pairs=pairs,
        cfg=from_mapping(ExtractConfig, p["extract"]),
        acts_path=snakemake.output.acts, tokens_path=snakemake.output.tokens,
        desc=f"{snakemake.wildcards.sae} {snakemake.wildcards.shard}",
    )
    log.info("wrote %d activations", n)
