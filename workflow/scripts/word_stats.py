from polyglot_sae.paired.stage import word_stats_file
from polyglot_sae.paired.stats import PairedConfig
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    inputs = snakemake.input
    pairs = [tuple(a_b.split("-")) for a_b in
             (path.rsplit("/", 1)[-1].removesuffix(".parquet") for path in inputs.links)]
    stats = word_stats_file(inputs.acts, inputs.tokens, inputs.pairs,
                            dict(zip(pairs, inputs.links)), inputs.model, snakemake.output.stats,
                            snakemake.output.examples, langs=p["langs"],
                            config=from_mapping(PairedConfig, p), n_examples=p["n_examples"])
    log.info("word-level statistics of %d features (%d links)", stats.height,
             int(stats["n_links"].max() or 0))
