rule summary:
    input:
        corpus=f"results/{CORPUS}/corpus_stats.json",
        quality=expand("results/{{run}}/sae_quality/{sae}.json", sae=SAES),
        maxacts=expand("results/{{run}}/maxacts/{sae}.parquet", sae=SAES),
        top=expand(
            "results/{{run}}/top_features/{sae}.{method}.md", sae=SAES, method=METHODS
        ),
        scores=expand(
            "results/{{run}}/scores/{sae}.{method}.parquet", sae=SAES, method=METHODS
        ),
        mono=expand(
            "results/{{run}}/monolinguality/{sae}.{method}.json",
            sae=SAES,
            method=METHODS,
        ),
        saes="results/{run}/sweeps/saes.parquet",
    output:
        summary="results/{run}/summary.md",
    log:
        "logs/{run}/summary.log",
    benchmark:
        "benchmarks/{run}/summary.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {"saes": list(SAES), "methods": METHODS},
    script:
        "../scripts/summary.py"
