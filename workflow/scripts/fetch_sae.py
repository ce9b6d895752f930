import os

# The fetch rules are the jobs that reach the hub: the Snakefile sets every job offline (hub.smk).
os.environ.update(HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0")

from polyglot_sae.hub.fetch import configured_revision, fetch_sae, model_width
from polyglot_sae.hub.releases import resolve
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    e = snakemake.params.cfg
    where = f"config saes[{e['id']}]"
    entry = resolve(e["release"], e["sae_id"], where)
    fetch_sae(entry, configured_revision(e), e["hook"], snakemake.output.sae,
              d_model=model_width(snakemake.input.model), where=where)
    log.info("fetched %s %s from %s", entry.release, entry.sae_id, entry.repo_id)
