from pathlib import Path

from polyglot_sae.report.explorer import ExplorerConfig, build_explorer
from polyglot_sae.report.page_data import FeaturePagesConfig, FeaturePagesInput
from polyglot_sae.report.page_entries import page_extras
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p, inputs = snakemake.params.cfg, snakemake.input
    paired = inputs.paired
    extras = page_extras({k: inputs[k] for k in inputs.keys()}, paired, p["langs"], inputs.refs)
    pages = FeaturePagesInput.from_files(paired, inputs.acts, inputs.tokens, p["langs"],
                                         refs=inputs.refs, name=snakemake.wildcards.sae, **extras)
    out = build_explorer(Path(inputs.words).parents[1], snakemake.wildcards.sae, pages,
                         snakemake.output.pages, from_mapping(FeaturePagesConfig, p, features=()),
                         from_mapping(ExplorerConfig, p))
    log.info("all-features browser in %s", out)
