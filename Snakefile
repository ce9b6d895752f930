# polyglot-sae: bilingual features of sparse autoencoders.
# Stages, one file each: corpus -> model -> sae -> extract -> reduce -> score -> figures,
# sweeps -> summary.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/reduce.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/mcs.smk"
include: "workflow/rules/logit_lens.smk"
include: "workflow/rules/pages.smk"
include: "workflow/rules/paired.smk"
include: "workflow/rules/summary.smk"


rule all:
    default_target: True
    input:
        SUMMARY,
        FIGURES,


onsuccess:
    print_summary(SUMMARY)
