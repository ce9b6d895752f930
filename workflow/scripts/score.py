from polyglot_sae.scoring import ScoreConfig, score_file
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    scores = score_file(snakemake.input.maxacts, snakemake.output.scores, langs=p["langs"],
                        config=from_mapping(ScoreConfig, p))
    log.info("%d alive features of %d", scores["rank"].count(), scores.height)
