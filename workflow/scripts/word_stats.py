from polyglot_sae.align.stage import language_pairs
from polyglot_sae.paired.stage import word_stats_file
from polyglot_sae.paired.stats import PairedConfig
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    inputs = snakemake.input
    # the rule lists the link tables in language_pairs' order
    links = dict(zip(language_pairs(p["langs"]), inputs.links))
    stats = word_stats_file(inputs.acts, inputs.tokens, inputs.pairs, links, inputs.model,
                            snakemake.output.stats, snakemake.output.examples, langs=p["langs"],
                            config=from_mapping(PairedConfig, p), n_examples=p["n_examples"])
    log.info("word-level statistics of %d features (%d links)", stats.height,
             int(stats["n_links"].max() or 0))
