import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.score.sweeps import sae_table
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    entries = [{**e, "d_sae": read_metadata(path)["d_sae"]}
               for e, path in zip(snakemake.params.cfg["entries"], snakemake.input.scores)]
    table = sae_table(entries, [pl.read_parquet(p) for p in snakemake.input.scores])
    log.info("per-SAE summary:\n%s", table)
    write_parquet(table, snakemake.output.table)
