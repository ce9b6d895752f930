import polars as pl

from polyglot_sae.score.plots import plot_pvalue_histogram
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    p = snakemake.params.cfg
    w = snakemake.wildcards
    plot_pvalue_histogram(pl.read_parquet(snakemake.input.scores), snakemake.output.plot,
                          note=f"SAE {w.sae}, method {w.method}, {p['permutations']} "
                               f"permutations (seed {p['seed']})")
