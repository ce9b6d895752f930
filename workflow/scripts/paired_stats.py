from polyglot_sae.paired.stage import paired_stats_file
from polyglot_sae.paired.stats import PairedConfig
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    inputs = snakemake.input
    paraphrase = None
    if "paraphrase" in inputs.keys():
        paraphrase = (p["paraphrase_of"], inputs.paraphrase, inputs.paraphrase_lengths)
    stats = paired_stats_file(inputs.maxacts, snakemake.output.stats, langs=p["langs"],
                              config=from_mapping(PairedConfig, p), lengths_path=inputs.lengths,
                              vocab_path=inputs.vocab, paraphrase=paraphrase)
    log.info("paired statistics of %d features", stats.height)
