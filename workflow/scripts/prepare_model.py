from polyglot_sae.model.load import ModelConfig, prepare_model
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    cfg = from_mapping(ModelConfig, snakemake.params.cfg)
    log.info("preparing %s from %s", snakemake.wildcards.model, cfg.source)
    prepare_model(cfg, snakemake.output.model)
