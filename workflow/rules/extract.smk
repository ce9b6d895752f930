def extract_params(wildcards, langs):
    """What an extraction job's tables depend on: hook, SAE, the shard's content, languages."""
    return {
        "hook": sae_entry(wildcards)["hook"],
        "sae_id": wildcards.sae,
        "shard": {
            "index": int(wildcards.shard),
            "shard_pairs": config["split"]["shard_pairs"],
            **shard_manifest()[wildcards.shard],
        },
        "langs": langs,
        "extract": config["extract"],
    }


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
