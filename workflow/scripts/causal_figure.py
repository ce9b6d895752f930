from polyglot_sae.causal.stage import causal_figure_file
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    causal_figure_file(snakemake.input.table, snakemake.output.figure,
                       snakemake.params.cfg["langs"], note=f"SAE {snakemake.wildcards.sae}")
