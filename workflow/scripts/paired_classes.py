from polyglot_sae.paired.classes import ClassConfig
from polyglot_sae.paired.stage import classify_file
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    scores = classify_file(snakemake.input.stats, snakemake.output.scores, langs=p["langs"],
                           classes=from_mapping(ClassConfig, p["classes"]),
                           word_stats_path=snakemake.input.get("word_stats"))
    log.info("classes:\n%s", scores.group_by("class").len().sort("len", descending=True))
