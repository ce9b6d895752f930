import polars as pl

from polyglot_sae.corpus import shard_pairs
from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    index, n_shards = map(int, snakemake.wildcards.shard.split("-of-"))
    shard = shard_pairs(pl.read_parquet(snakemake.input.pairs), n_shards, index)
    log.info("shard %d of %d: %d pairs", index, n_shards, shard["pair_id"].n_unique())
    write_parquet(shard, snakemake.output.pairs, {"n_pairs": shard["pair_id"].n_unique()})
