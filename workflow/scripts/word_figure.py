import polars as pl

from polyglot_sae.paired.plots import plot_word_level
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    plot_word_level(pl.read_parquet(snakemake.input.scores), snakemake.output.figure,
                    snakemake.params.cfg["langs"], note=f"SAE {snakemake.wildcards.sae}")
