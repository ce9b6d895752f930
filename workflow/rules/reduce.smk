rule reduce:
    input:
        acts=shard_files("acts"),
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
