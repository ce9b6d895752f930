from pathlib import Path

from polyglot_sae.align.aligner import AlignConfig
from polyglot_sae.align.stage import align_file
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    counts = align_file(snakemake.input.pairs, Path(snakemake.output.links[0]).parent,
                        p["langs"], from_mapping(AlignConfig, p))
    for pair, c in counts.items():
        log.info("%s: %d links in %d pairs (%d skipped: a side without words)", pair,
                 c["links"], c["aligned"], c["skipped_empty"])
