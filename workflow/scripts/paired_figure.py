import polars as pl

from polyglot_sae.paired.plots import plot_ceiling
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    p = snakemake.params.cfg
    plot_ceiling(pl.read_parquet(snakemake.input.scores), pl.read_parquet(snakemake.input.words),
                 snakemake.output.figure, p["langs"], top_k=p["top_k"],
                 note=f"SAE {snakemake.wildcards.sae}")
