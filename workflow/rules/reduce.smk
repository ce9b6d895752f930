rule reduce:
    input:
        acts=expand("results/{{run}}/acts/{{sae}}/{shard}.parquet", shard=SHARDS),
    output:
        maxacts="results/{run}/maxacts/{sae}.parquet",
    log:
        "logs/{run}/reduce/{sae}.log",
    benchmark:
        "benchmarks/{run}/reduce/{sae}.tsv"
    conda:
        ENV
    script:
        "../scripts/reduce.py"
