import polars as pl

from polyglot_sae.atomic_io import write_json
from polyglot_sae.corpus.paraphrase import ParaphraseConfig, build_paraphrase
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    cfg = from_mapping(ParaphraseConfig, snakemake.params.cfg)
    refs, pairs = pl.read_parquet(snakemake.input.refs), pl.read_parquet(snakemake.input.pairs)
    _, counts = build_paraphrase(refs, pairs, cfg, snakemake.output.pairs)
    log.info("paraphrase %s of %s: %s", cfg.origin, cfg.lang, counts)
    write_json({**counts, "origin": cfg.origin, "label": cfg.label}, snakemake.output.stats)
