from polyglot_sae.atomic_io import write_json
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    write_json(snakemake.params.cfg, snakemake.output.config)
