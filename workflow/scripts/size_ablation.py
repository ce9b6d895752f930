import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.score.null import NullConfig
from polyglot_sae.score.bilingual import ScoreConfig
from polyglot_sae.subsample import SubsampleConfig
from polyglot_sae.score.sweeps import dataset_size_ablation
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    ablation = dataset_size_ablation(
        pl.read_parquet(snakemake.input.maxacts),
        pair_ids=pl.read_parquet(snakemake.input.pairs)["pair_id"].to_numpy(),
        d_sae=read_metadata(snakemake.input.maxacts)["d_sae"],
        langs=p["langs"],
        score_config=ScoreConfig(method=p["method"], beta_rank=p["beta_rank"]),
        null_config=NullConfig(permutations=p["ablation_permutations"], seed=p["seed"],
                               early_stop_hits=p["early_stop_hits"]),
        config=SubsampleConfig(sizes=tuple(p["ablation_sizes"]), seed=p["seed"],
                               subsets=p["bootstrap"], top_k=p["top_k"]),
    )
    log.info("dataset-size ablation:\n%s", ablation)
    write_parquet(ablation, snakemake.output.table, {"config": p})
