rule reduce:
    input:
        acts=shard_files("acts"),
        tokens=shard_files("tokens"),
    output:
        maxacts="results/{run}/maxacts/{sae}.parquet",
        lengths="results/{run}/maxacts/{sae}.lengths.parquet",
        vocab="results/{run}/maxacts/{sae}.vocab.parquet",
    log:
        "logs/{run}/reduce/{sae}.log",
    benchmark:
        "benchmarks/{run}/reduce/{sae}.tsv"
    conda:
        ENV
    script:
        "../scripts/reduce.py"
