from polyglot_sae.report.page_data import FeaturePagesConfig, FeaturePagesInput
from polyglot_sae.report.page_entries import page_extras
from polyglot_sae.report.pages import build_feature_pages
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p, inputs = snakemake.params.cfg, snakemake.input
    extras = page_extras({k: inputs[k] for k in inputs.keys()}, inputs.scores, p["langs"],
                         inputs.refs)
    pages = FeaturePagesInput.from_files(inputs.scores, inputs.acts, inputs.tokens, p["langs"],
                                         refs=inputs.refs, name=snakemake.wildcards.sae, **extras)
    config = from_mapping(FeaturePagesConfig, p, features=tuple(p["features"]))
    out = build_feature_pages(pages, snakemake.output.pages, config)
    log.info("feature pages in %s", out)
