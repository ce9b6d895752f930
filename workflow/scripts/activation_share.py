import polars as pl

from polyglot_sae.atomic_io import read_metadata
from polyglot_sae.activations.plots import plot_activation_share
from polyglot_sae.activations.reduce import n_pairs_of
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    maxacts = pl.read_parquet(snakemake.input.maxacts)
    n_pairs = n_pairs_of(snakemake.input.maxacts, maxacts)
    plot_activation_share(maxacts, n_pairs, snakemake.params.cfg["langs"], snakemake.output.plot,
                          d_sae=read_metadata(snakemake.input.maxacts)["d_sae"],
                          note=f"SAE {snakemake.wildcards.sae}, {n_pairs} scored pairs, BOS excluded")
