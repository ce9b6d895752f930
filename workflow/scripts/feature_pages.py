from polyglot_sae.report.page_data import (FeaturePagesConfig, FeaturePagesInput, causal_entries,
                                          logit_lens_entries, mcs_entries, word_entries)
from polyglot_sae.report.pages import build_feature_pages
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    extras = {}
    if "mcs" in snakemake.input.keys():
        extras["mcs"] = mcs_entries(snakemake.input.mcs)
    if "logit_lens" in snakemake.input.keys():
        extras["logit_lens"] = logit_lens_entries(snakemake.input.logit_lens)
    if "causal" in snakemake.input.keys():
        extras["causal"] = causal_entries(snakemake.input.causal, p["langs"])
    if "word_examples" in snakemake.input.keys():
        extras["words"] = word_entries(snakemake.input.scores, snakemake.input.word_examples,
                                       snakemake.input.texts, snakemake.input.refs)
    inputs = FeaturePagesInput.from_files(
        snakemake.input.scores, snakemake.input.acts, snakemake.input.tokens, p["langs"],
        refs=snakemake.input.refs, name=snakemake.wildcards.sae, **extras)
    config = from_mapping(FeaturePagesConfig, p, features=tuple(p["features"]))
    out = build_feature_pages(inputs, snakemake.output.pages, config)
    log.info("feature pages in %s", out)
