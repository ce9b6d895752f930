import torch  # noqa: F401 (imported before rule_log, so the rule's threads apply to it)

from polyglot_sae.causal.config import CausalConfig
from polyglot_sae.causal.stage import causal_file
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    inputs = snakemake.input
    table = causal_file(model_dir=inputs.model, sae_dir=inputs.sae, hook=p["hook"],
                        pairs_path=inputs.pairs, train_path=inputs.train,
                        score_path=inputs.score, maxacts_path=inputs.maxacts,
                        scores=dict(zip(p["methods"], inputs.scores)),
                        out_path=snakemake.output.table,
                        dictionary_path=snakemake.output.dictionary, langs=p["langs"],
                        config=from_mapping(CausalConfig, p["causal"]),
                        sae_id=snakemake.wildcards.sae)
    log.info("causal check of %d features: %s", table.height,
             dict(table.group_by("verdict").len().iter_rows()))
