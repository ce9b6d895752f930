import os

# The fetch rules are the jobs that reach the hub: the Snakefile sets every job offline (hub.smk).
os.environ.update(HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0")

from dataclasses import asdict

from polyglot_sae.hub.fetch import configured_revision, fetch_model
from polyglot_sae.model.load import ModelConfig
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    cfg = snakemake.params.cfg
    revision = configured_revision(cfg)
    spec = asdict(from_mapping(ModelConfig, cfg))
    fetch_model(cfg["tl_name"], revision, snakemake.output.model, spec)
    log.info("fetched %s@%s into %s", cfg["tl_name"], revision, snakemake.output.model)
