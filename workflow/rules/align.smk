# Word alignment of the whole corpus, once per corpus: one link table per pair of languages.
# Package: polyglot_sae.align


rule align:
    input:
        pairs="results/{corpus}/pairs.parquet",
    output:
        links=expand("results/{{corpus}}/align/{pair}.parquet", pair=LANG_PAIRS),
    log:
        "logs/{corpus}/align.log",
    benchmark:
        "benchmarks/{corpus}/align.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg={
            "langs": config["corpus"]["langs"],
            **{k: v for k, v in config["align"].items() if k != "enabled"},
        },
    script:
        "../scripts/align.py"
