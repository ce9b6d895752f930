import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.paired.ablation import paired_size_ablation
from polyglot_sae.paired.classes import ClassConfig
from polyglot_sae.paired.stage import paraphrase_input
from polyglot_sae.paired.stats import PairedConfig
from polyglot_sae.subsample import SubsampleConfig
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    inputs = snakemake.input
    lengths = pl.read_parquet(inputs.lengths)
    paraphrase = None
    if "paraphrase" in inputs.keys():
        paraphrase, lengths = paraphrase_input(p["paraphrase_of"], inputs.paraphrase,
                                               inputs.paraphrase_lengths, lengths)
    ablation = paired_size_ablation(
        pl.read_parquet(inputs.maxacts),
        pair_ids=pl.read_parquet(inputs.pairs)["pair_id"].to_numpy(),
        d_sae=read_metadata(inputs.maxacts)["d_sae"], langs=p["langs"], lengths=lengths,
        vocab=pl.read_parquet(inputs.vocab), paraphrase=paraphrase,
        config=from_mapping(PairedConfig, p["paired"]),
        classes=from_mapping(ClassConfig, p["paired"]["classes"]),
        subsample=SubsampleConfig(sizes=tuple(p["ablation_sizes"]), seed=p["seed"],
                                  subsets=p["bootstrap"], top_k=p["top_k"]),
    )
    log.info("dataset-size ablation (paired):\n%s", ablation)
    write_parquet(ablation, snakemake.output.table, {"config": p})
