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


rule bi_curve:
    input:
        scores="results/{run}/scores/{sae}.{method}.parquet",
    output:
        plot=report(
            "results/{run}/figures/{sae}.{method}.bi_curve.png",
            caption="../report/bi_curve.rst",
            category="Figures",
        ),
    log:
        "logs/{run}/figures/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/figures/{sae}.{method}.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {"method": w.method, "beta_rank": config["score"]["beta_rank"]},
    script:
        "../scripts/bi_curve.py"


rule pvalue_histogram:
    input:
        scores="results/{run}/scores/{sae}.{method}.parquet",
    output:
        plot=report(
            "results/{run}/figures/{sae}.{method}.pvalues.png",
            caption="../report/pvalue_histogram.rst",
            category="Figures",
        ),
    log:
        "logs/{run}/figures/{sae}.{method}.pvalues.log",
    benchmark:
        "benchmarks/{run}/figures/{sae}.{method}.pvalues.tsv"
    conda:
        ENV
    params:
        cfg={k: config["score"][k] for k in ("permutations", "seed")},
    script:
        "../scripts/pvalue_histogram.py"


rule monolinguality:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
        scores="results/{run}/scores/{sae}.{method}.parquet",
    output:
        table="results/{run}/monolinguality/{sae}.{method}.parquet",
        correlation="results/{run}/monolinguality/{sae}.{method}.json",
    log:
        "logs/{run}/monolinguality/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/monolinguality/{sae}.{method}.tsv"
    conda:
        ENV
    params:
        cfg={"langs": config["corpus"]["langs"]},
    script:
        "../scripts/monolinguality.py"
