def paired_summary_inputs(wildcards):
    """The paired method's extras: words, the lexicon check, the paraphrase alignment."""
    if not PAIRED:
        return {}
    extras = {"words": expand(f"results/{wildcards.run}/paired/{{sae}}.words.parquet", sae=SAES)}
    if LEXICON:
        extras["lexicon"] = expand(
            f"results/{wildcards.run}/lexicon/{{sae}}.parquet", sae=SAES
        )
    if PARAPHRASE:
        extras["paraphrase"] = f"results/{CORPUS}/paraphrase_stats.json"
    return extras


rule summary:
    input:
        unpack(paired_summary_inputs),
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
            method=BI_METHODS,
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
        cfg=lambda w: {
            "saes": list(SAES),
            "methods": METHODS,
            "top_k": config["report"]["top_k"],
        },
    script:
        "../scripts/summary.py"
