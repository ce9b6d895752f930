from polyglot_sae.report.summary import write_summary
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    write_summary(snakemake.input, snakemake.params.cfg, snakemake.wildcards.run,
                  snakemake.output.summary)
