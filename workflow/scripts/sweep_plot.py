import polars as pl

from polyglot_sae.atomic_io import read_metadata
from polyglot_sae.score.plots import plot_beta_sweep
from polyglot_sae.subsample import plot_dataset_size
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    w = snakemake.wildcards
    p = read_metadata(snakemake.input.table)["config"]
    table = pl.read_parquet(snakemake.input.table)
    note = f"SAE {w.sae}, method {w.method}"
    if w.sweep == "beta":
        plot_beta_sweep(table, snakemake.output.plot, top_k=p["top_k"],
                        reference_beta_rank=p["beta_rank"], note=note)
    else:
        null = (f", {p['ablation_permutations']} permutations" if "ablation_permutations" in p
                else "")
        plot_dataset_size(table, snakemake.output.plot, top_k=p["top_k"],
                          found=("concept-bilingual features (method paired)"
                                 if w.method == "paired" else "features bilingual at q < 0.05"),
                          note=f"{note}{null}, {p['bootstrap']} subsets of distinct pairs per size")
