from polyglot_sae.logit_lens.stage import lens_join_stage
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    w = snakemake.wildcards
    crosstab = lens_join_stage(snakemake.input.scores, snakemake.input.enrichment, snakemake.output,
                               snakemake.params.langs, note=f"SAE {w.sae}, method {w.method}")
    log.info("which languages' tokens the features promote:\n%s", crosstab)
