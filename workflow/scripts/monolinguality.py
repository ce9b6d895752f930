import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_json, write_parquet
from polyglot_sae.score.monolinguality import monolinguality, rank_correlation
from polyglot_sae.activations.reduce import n_pairs_of
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    maxacts = pl.read_parquet(snakemake.input.maxacts)
    nu = monolinguality(maxacts, n_pairs=n_pairs_of(snakemake.input.maxacts, maxacts),
                        d_sae=read_metadata(snakemake.input.maxacts)["d_sae"],
                        langs=snakemake.params.cfg["langs"])
    correlation = rank_correlation(pl.read_parquet(snakemake.input.scores), nu)
    log.info("Spearman(bi_score, nu_max): %s", correlation)
    write_parquet(nu, snakemake.output.table)
    write_json(correlation, snakemake.output.correlation)
