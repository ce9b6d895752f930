# The translation-lexicon check of every method's top features.
# Package: polyglot_sae.lexicon


rule lexicon_check:
    input:
        scores=expand("results/{{run}}/scores/{{sae}}.{method}.parquet", method=METHODS),
        maxacts="results/{run}/maxacts/{sae}.parquet",
        vocab="results/{run}/maxacts/{sae}.vocab.parquet",
    output:
        table="results/{run}/lexicon/{sae}.parquet",
        features="results/{run}/lexicon/{sae}.features.parquet",
        markdown="results/{run}/lexicon/{sae}.md",
    log:
        "logs/{run}/lexicon/{sae}.log",
    benchmark:
        "benchmarks/{run}/lexicon/{sae}.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "methods": METHODS,
            "min_cofire": config["paired"]["classes"]["min_cofire"],
            **{k: v for k, v in config["lexicon"].items() if k != "enabled"},
        },
    script:
        "../scripts/lexicon_check.py"
