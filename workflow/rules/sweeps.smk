rule beta_sweep:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
    output:
        table="results/{run}/sweeps/{sae}.{method}.beta.parquet",
        plot=report(
            "results/{run}/sweeps/{sae}.{method}.beta.png",
            caption="../report/beta_sweep.rst",
            category="Sweeps",
        ),
    log:
        "logs/{run}/sweeps/{sae}.{method}.beta.log",
    benchmark:
        "benchmarks/{run}/sweeps/{sae}.{method}.beta.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "method": w.method,
            "beta_rank": config["score"]["beta_rank"],
            "beta_ranks": config["sweeps"]["beta_ranks"],
            "top_k": config["sweeps"]["top_k"],
            "langs": config["corpus"]["langs"],
        },
    script:
        "../scripts/beta_sweep.py"


rule size_ablation:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
        pairs=f"results/{CORPUS}/split/score.parquet",
    output:
        table="results/{run}/sweeps/{sae}.{method}.size.parquet",
        plot=report(
            "results/{run}/sweeps/{sae}.{method}.size.png",
            caption="../report/size_ablation.rst",
            category="Sweeps",
        ),
    log:
        "logs/{run}/sweeps/{sae}.{method}.size.log",
    benchmark:
        "benchmarks/{run}/sweeps/{sae}.{method}.size.tsv"
    wildcard_constraints:
        method="exact|seed",
    conda:
        ENV
    params:
        cfg=lambda w: {
            "method": w.method,
            "beta_rank": config["score"]["beta_rank"],
            "early_stop_hits": config["score"]["early_stop_hits"],
            "langs": config["corpus"]["langs"],
            **{
                k: config["sweeps"][k]
                for k in (
                    "ablation_sizes",
                    "bootstrap",
                    "ablation_permutations",
                    "seed",
                    "top_k",
                )
            },
        },
    script:
        "../scripts/size_ablation.py"


rule sae_sweep:
    input:
        scores=expand(
            "results/{{run}}/scores/{sae}.{method}.parquet", sae=SAES, method=BI_METHODS
        ),
    output:
        table="results/{run}/sweeps/saes.parquet",
    log:
        "logs/{run}/sweeps/saes.log",
    benchmark:
        "benchmarks/{run}/sweeps/saes.tsv"
    conda:
        ENV
    params:
        cfg={
            "entries": [
                {"sae": s, "hook": SAES[s]["hook"], "method": m}
                for s in SAES
                for m in BI_METHODS
            ]
        },
    script:
        "../scripts/sae_sweep.py"
