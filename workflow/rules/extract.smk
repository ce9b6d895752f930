rule extract:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        pairs=f"results/{CORPUS}/shards/{{shard}}.parquet",
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
        cfg=lambda w: {
            "hook": sae_entry(w)["hook"],
            "sae_id": w.sae,
            "langs": config["corpus"]["langs"],
            "extract": config["extract"],
        },
    script:
        "../scripts/extract.py"
