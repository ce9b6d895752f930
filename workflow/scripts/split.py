import polars as pl

from polyglot_sae.corpus.pairs import SplitConfig, split_ids
from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    pairs = pl.read_parquet(snakemake.input.pairs)
    cfg = from_mapping(SplitConfig, snakemake.params.cfg)
    ids = split_ids(pairs["pair_id"].unique().to_numpy(), cfg, snakemake.wildcards.part)
    log.info("%s split: %d pairs", snakemake.wildcards.part, len(ids))
    write_parquet(pairs.filter(pl.col("pair_id").is_in(ids)), snakemake.output.pairs)
