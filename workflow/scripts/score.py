from polyglot_sae.score.null import NullConfig
from polyglot_sae.score.bilingual import ScoreConfig
from polyglot_sae.score.files import score_file
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    scores = score_file(snakemake.input.maxacts, snakemake.output.scores, langs=p["langs"],
                        config=from_mapping(ScoreConfig, p), null=from_mapping(NullConfig, p))
    log.info("%d alive features of %d", scores["rank"].count(), scores.height)
    if p["permutations"]:
        log.info("%d features bilingual at q < 0.05", (scores["q_value"] < 0.05).sum())
