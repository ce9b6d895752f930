# Corpus: aligned pairs, the split, the shards, and the paraphrase of one language.
# Package: polyglot_sae.corpus


rule corpus:
    input:
        unpack(corpus_sources),
    output:
        pairs="results/{corpus}/pairs.parquet",
        refs="results/{corpus}/refs.parquet",
        stats="results/{corpus}/corpus_stats.json",
    log:
        "logs/{corpus}/corpus.log",
    benchmark:
        "benchmarks/{corpus}/corpus.tsv"
    conda:
        ENV
    params:
        # The paraphrase has its own rule: adding one must not rewrite the scored pairs.
        cfg={
            k: v
            for k, v in config["corpus"].items()
            if k not in ("name", "paraphrase")
        },
    script:
        "../scripts/corpus.py"


rule split:
    input:
        pairs="results/{corpus}/pairs.parquet",
    output:
        pairs="results/{corpus}/split/{part}.parquet",
    log:
        "logs/{corpus}/split_{part}.log",
    benchmark:
        "benchmarks/{corpus}/split_{part}.tsv"
    wildcard_constraints:
        part="train|score",
    conda:
        ENV
    params:
        cfg=split_params,
    script:
        "../scripts/split.py"


checkpoint shards:
    input:
        pairs="results/{corpus}/split/score.parquet",
    output:
        manifest="results/{corpus}/shards.json",
    log:
        "logs/{corpus}/shards.log",
    benchmark:
        "benchmarks/{corpus}/shards.tsv"
    conda:
        ENV
    params:
        shard_pairs=config["split"]["shard_pairs"],
    script:
        "../scripts/shards.py"


rule paraphrase:
    input:
        unpack(paraphrase_sources),
        pairs="results/{corpus}/pairs.parquet",
        refs="results/{corpus}/refs.parquet",
    output:
        pairs="results/{corpus}/paraphrase.parquet",
        stats="results/{corpus}/paraphrase_stats.json",
    log:
        "logs/{corpus}/paraphrase.log",
    benchmark:
        "benchmarks/{corpus}/paraphrase.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: PARAPHRASE,
    script:
        "../scripts/paraphrase.py"
