import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.paired.words import feature_words
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    words = feature_words(pl.scan_parquet(snakemake.input.maxacts),
                          pl.read_parquet(snakemake.input.vocab), p["langs"], p["top_words"],
                          source=snakemake.input.maxacts)
    write_parquet(words, snakemake.output.words, read_metadata(snakemake.input.maxacts) | p)
    log.info("%d (feature, language, word) rows", words.height)
