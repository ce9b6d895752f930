from polyglot_sae.reduce import write_max_table
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    rows, meta = write_max_table(snakemake.input.acts, snakemake.output.maxacts)
    log.info("max table: %d rows over %d pairs", rows, meta["n_pairs"])
