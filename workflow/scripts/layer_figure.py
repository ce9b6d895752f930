import polars as pl

from polyglot_sae.layers.plots import plot_layers
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    plot_layers(pl.read_parquet(snakemake.input.table), snakemake.output.figure,
                snakemake.params.cfg["langs"])
