# The causal check: ablation and steering of each SAE's top features, per language, against
# matched controls; every alive feature's effect by exact ablation on a few sentences.
# Package: polyglot_sae.causal


rule causal:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        pairs=f"results/{CORPUS}/pairs.parquet",
        train=f"results/{CORPUS}/split/train.parquet",
        score=f"results/{CORPUS}/split/score.parquet",
        maxacts="results/{run}/maxacts/{sae}.parquet",
        scores=expand("results/{{run}}/scores/{{sae}}.{method}.parquet", method=METHODS),
    output:
        table="results/{run}/causal/{sae}.parquet",
        dictionary="results/{run}/causal/{sae}.dictionary.parquet",
    log:
        "logs/{run}/causal/{sae}.log",
    benchmark:
        "benchmarks/{run}/causal/{sae}.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: {
            "hook": sae_entry(w)["hook"],
            "langs": config["corpus"]["langs"],
            "methods": METHODS,
            "causal": {k: v for k, v in config["causal"].items() if k != "enabled"},
        },
    script:
        "../scripts/causal.py"


rule causal_figure:
    input:
        table="results/{run}/causal/{sae}.parquet",
    output:
        figure=report(
            "results/{run}/causal/{sae}.png",
            caption="../report/causal.rst",
            category="Causal check",
        ),
    log:
        "logs/{run}/causal/{sae}.figure.log",
    benchmark:
        "benchmarks/{run}/causal/{sae}.figure.tsv"
    conda:
        ENV
    params:
        cfg={"langs": config["corpus"]["langs"]},
    script:
        "../scripts/causal_figure.py"


rule causal_dictionary:
    input:
        dictionary="results/{run}/causal/{sae}.dictionary.parquet",
        scores=expand(
            "results/{{run}}/scores/{{sae}}.{method}.parquet",
            method=["paired"] if PAIRED else [],
        ),
    output:
        figure=report(
            "results/{run}/causal/{sae}.dictionary.png",
            caption="../report/causal_dictionary.rst",
            category="Causal check",
        ),
    log:
        "logs/{run}/causal/{sae}.dictionary.log",
    benchmark:
        "benchmarks/{run}/causal/{sae}.dictionary.tsv"
    conda:
        ENV
    params:
        cfg={"langs": config["corpus"]["langs"]},
    script:
        "../scripts/causal_dictionary.py"
