# polyglot-sae: bilingual features of sparse autoencoders.
# Stages, one file each and one package each (polyglot_sae.<stage>): corpus -> model ->
# activations -> score, paired (with align), lexicon, mcs, logit_lens, causal -> layers -> report.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


# The jobs that reach the hub run where Snakemake runs (workflow/rules/hub.smk).
localrules:
    fetch_model,
    fetch_sae,
    fetch_corpus,


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/paired.smk"
include: "workflow/rules/lexicon.smk"
include: "workflow/rules/mcs.smk"
include: "workflow/rules/logit_lens.smk"
include: "workflow/rules/layers.smk"
include: "workflow/rules/causal.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        SUMMARY,
        FIGURES,


onsuccess:
    print_summary(SUMMARY)
