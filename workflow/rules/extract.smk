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
        cfg=lambda w: {
            "hook": sae_entry(w)["hook"],
            "sae_id": w.sae,
            "shard": {
                "index": int(w.shard),
                "shard_pairs": config["split"]["shard_pairs"],
                **shard_manifest()[w.shard],
            },
            "langs": config["corpus"]["langs"],
            "extract": config["extract"],
        },
    script:
        "../scripts/extract.py"
