rule corpus:
    output:
        pairs="results/{corpus}/pairs.parquet",
        refs="results/{corpus}/refs.parquet",
        stats="results/{corpus}/corpus_stats.json",
    params:
        cfg={k: v for k, v in config["corpus"].items() if k != "name"},
    log:
        "logs/{corpus}/corpus.log",
    benchmark:
        "benchmarks/{corpus}/corpus.tsv"
    conda:
        ENV
    script:
        "../scripts/corpus.py"


rule split:
    input:
        pairs="results/{corpus}/pairs.parquet",
    output:
        pairs="results/{corpus}/split/{part}.parquet",
    params:
        cfg=split_params(),
    wildcard_constraints:
        part="train|score",
    log:
        "logs/{corpus}/split_{part}.log",
    benchmark:
        "benchmarks/{corpus}/split_{part}.tsv"
    conda:
        ENV
    script:
        "../scripts/split.py"


rule shard:
    input:
        pairs="results/{corpus}/split/score.parquet",
    output:
        pairs="results/{corpus}/shards/{shard}.parquet",
    log:
        "logs/{corpus}/shard_{shard}.log",
    benchmark:
        "benchmarks/{corpus}/shard_{shard}.tsv"
    conda:
        ENV
    script:
        "../scripts/shard.py"
