from polyglot_sae.causal.stage import dictionary_figure_file
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    dictionary_figure_file(snakemake.input.dictionary, list(snakemake.input.scores),
                           snakemake.output.figure, snakemake.params.cfg["langs"],
                           note=f"SAE {snakemake.wildcards.sae}")
