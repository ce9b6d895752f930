import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.activations.reduce import n_pairs_of
from polyglot_sae.score.bilingual import ScoreConfig
from polyglot_sae.score.sweeps import beta_sweep
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    maxacts = pl.read_parquet(snakemake.input.maxacts)
    sweep = beta_sweep(maxacts, n_pairs=n_pairs_of(snakemake.input.maxacts, maxacts),
                       d_sae=read_metadata(snakemake.input.maxacts)["d_sae"], langs=p["langs"],
                       config=ScoreConfig(method=p["method"], beta_rank=p["beta_rank"]),
                       beta_ranks=p["beta_ranks"], top_k=p["top_k"])
    log.info("beta sweep:\n%s", sweep)
    write_parquet(sweep, snakemake.output.table, {"config": p})
