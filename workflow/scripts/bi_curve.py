import polars as pl

from polyglot_sae.score.plots import plot_bi_curve
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    p = snakemake.params.cfg
    plot_bi_curve(pl.read_parquet(snakemake.input.scores), snakemake.output.plot, p["method"],
                  note=f"SAE {snakemake.wildcards.sae}, beta rank {p['beta_rank']}")
