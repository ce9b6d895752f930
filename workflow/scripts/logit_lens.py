from polyglot_sae.logit_lens.stage import LensStageConfig, logit_lens_stage
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    provenance = logit_lens_stage(snakemake.input.model, snakemake.input.sae,
                                  snakemake.input.tokens, p["langs"], snakemake.output,
                                  config=from_mapping(LensStageConfig, p))
    log.info("logit lens: %s", provenance)
