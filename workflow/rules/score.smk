rule score:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
    output:
        scores="results/{run}/scores/{sae}.{method}.parquet",
    log:
        "logs/{run}/score/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/score/{sae}.{method}.tsv"
    wildcard_constraints:
        method="exact|seed",
    conda:
        ENV
    params:
        cfg=lambda w: {
            "method": w.method,
            "langs": config["corpus"]["langs"],
            **{
                k: config["score"][k]
                for k in ("beta_rank", "permutations", "seed", "early_stop_hits")
            },
        },
    script:
        "../scripts/score.py"


rule top_features:
    input:
        scores="results/{run}/scores/{sae}.{method}.parquet",
        maxacts="results/{run}/maxacts/{sae}.parquet",
        acts=shard_files("acts"),
        tokens=shard_files("tokens"),
        refs=f"results/{CORPUS}/refs.parquet",
    output:
        table="results/{run}/top_features/{sae}.{method}.parquet",
        markdown="results/{run}/top_features/{sae}.{method}.md",
    log:
        "logs/{run}/top_features/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/top_features/{sae}.{method}.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "top_k": config["report"]["top_k"],
            "n_examples": config["report"]["n_examples"],
            "langs": config["corpus"]["langs"],
        },
    script:
        "../scripts/top_features.py"
