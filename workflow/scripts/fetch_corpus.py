import os

# The fetch rules are the jobs that reach the hub: the Snakefile sets every job offline (hub.smk).
os.environ.update(HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0")

from polyglot_sae.hub.fetch import configured_revision, fetch_corpus
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    c = snakemake.params.cfg
    fetch_corpus(c["name"], c["config"], c["split"], configured_revision(c),
                 snakemake.output.table)
    log.info("fetched %s %s/%s", c["name"], c["config"], c["split"])
