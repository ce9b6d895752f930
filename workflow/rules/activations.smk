# Activations: per-shard sparse extraction (the paraphrase too), the per-pair max table, the first figure.
# Package: polyglot_sae.activations


rule extract:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        # Not its timestamp but its content decides (params `shard`): a rewritten split with the
        # same pairs in this shard must not rerun the extraction.
        pairs=ancient(f"results/{CORPUS}/split/score.parquet"),
        # Read by params (the shard's digest); a job run elsewhere (SLURM) re-reads it there.
        manifest=ancient(f"results/{CORPUS}/shards.json"),
    output:
        acts="results/{run}/acts/{sae}/{shard}.parquet",
        tokens="results/{run}/tokens/{sae}/{shard}.parquet",
    log:
        "logs/{run}/extract/{sae}/{shard}.log",
    benchmark:
        "benchmarks/{run}/extract/{sae}/{shard}.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: extract_params(w, config["corpus"]["langs"]),
    script:
        "../scripts/extract.py"


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


use rule extract as extract_paraphrase with:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        pairs=ancient(f"results/{CORPUS}/split/score.parquet"),
        manifest=ancient(f"results/{CORPUS}/shards.json"),
        paraphrase=f"results/{CORPUS}/paraphrase.parquet",
    output:
        acts="results/{run}/para_acts/{sae}/{shard}.parquet",
        tokens="results/{run}/para_tokens/{sae}/{shard}.parquet",
    log:
        "logs/{run}/extract_paraphrase/{sae}/{shard}.log",
    benchmark:
        "benchmarks/{run}/extract_paraphrase/{sae}/{shard}.tsv"
    params:
        cfg=lambda w: extract_params(w, [f"{PARAPHRASE['lang']}_para"]),


use rule reduce as reduce_paraphrase with:
    input:
        acts=shard_files("para_acts"),
        tokens=shard_files("para_tokens"),
    output:
        maxacts="results/{run}/maxacts/{sae}.para.parquet",
        lengths="results/{run}/maxacts/{sae}.para.lengths.parquet",
        vocab="results/{run}/maxacts/{sae}.para.vocab.parquet",
    log:
        "logs/{run}/reduce_paraphrase/{sae}.log",
    benchmark:
        "benchmarks/{run}/reduce_paraphrase/{sae}.tsv"


rule activation_share:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
    output:
        plot=report(
            "results/{run}/figures/{sae}.activation_share.png",
            caption="../report/activation_share.rst",
            category="Figures",
        ),
    log:
        "logs/{run}/figures/{sae}.activation_share.log",
    benchmark:
        "benchmarks/{run}/figures/{sae}.activation_share.tsv"
    conda:
        ENV
    params:
        cfg={"langs": config["corpus"]["langs"]},
    script:
        "../scripts/activation_share.py"
