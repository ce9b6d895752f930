# The seed's BI methods: scores with the permutation null, their figures, sweeps and monolinguality.
# Package: polyglot_sae.score


rule score:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
    output:
        scores="results/{run}/scores/{sae}.{method}.parquet",
    log:
        "logs/{run}/score/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/score/{sae}.{method}.tsv"
    wildcard_constraints:
        method="exact|seed",
    conda:
        ENV
    params:
        cfg=lambda w: {
            "method": w.method,
            "langs": config["corpus"]["langs"],
            **{
                k: config["score"][k]
                for k in ("beta_rank", "permutations", "seed", "early_stop_hits")
            },
        },
    script:
        "../scripts/score.py"


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


rule beta_sweep:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
    output:
        table="results/{run}/sweeps/{sae}.{method}.beta.parquet",
    log:
        "logs/{run}/sweeps/{sae}.{method}.beta.log",
    benchmark:
        "benchmarks/{run}/sweeps/{sae}.{method}.beta.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "method": w.method,
            "beta_rank": config["score"]["beta_rank"],
            "beta_ranks": config["sweeps"]["beta_ranks"],
            "top_k": config["sweeps"]["top_k"],
            "langs": config["corpus"]["langs"],
        },
    script:
        "../scripts/beta_sweep.py"


rule size_ablation:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
        pairs=f"results/{CORPUS}/split/score.parquet",
    output:
        table="results/{run}/sweeps/{sae}.{method}.size.parquet",
    log:
        "logs/{run}/sweeps/{sae}.{method}.size.log",
    benchmark:
        "benchmarks/{run}/sweeps/{sae}.{method}.size.tsv"
    wildcard_constraints:
        method="exact|seed",
    conda:
        ENV
    params:
        cfg=lambda w: {
            "method": w.method,
            "beta_rank": config["score"]["beta_rank"],
            "early_stop_hits": config["score"]["early_stop_hits"],
            "langs": config["corpus"]["langs"],
            **{
                k: config["sweeps"][k]
                for k in (
                    "ablation_sizes",
                    "bootstrap",
                    "ablation_permutations",
                    "seed",
                    "top_k",
                )
            },
        },
    script:
        "../scripts/size_ablation.py"


rule sae_sweep:
    input:
        scores=expand(
            "results/{{run}}/scores/{sae}.{method}.parquet",
            sae=SAES,
            method=BI_METHODS,
        ),
    output:
        table="results/{run}/sweeps/saes.parquet",
    log:
        "logs/{run}/sweeps/saes.log",
    benchmark:
        "benchmarks/{run}/sweeps/saes.tsv"
    conda:
        ENV
    params:
        cfg={
            "entries": [
                {"sae": s, "hook": SAES[s]["hook"], "method": m}
                for s in SAES
                for m in BI_METHODS
            ]
        },
    script:
        "../scripts/sae_sweep.py"


# The sweeps' figures are rules of their own: a caption or style change redraws them in seconds
# and leaves the minutes of scoring behind the tables alone.
rule sweep_plot:
    input:
        table="results/{run}/sweeps/{sae}.{method}.{sweep}.parquet",
    output:
        plot=report(
            "results/{run}/sweeps/{sae}.{method}.{sweep}.png",
            caption="../report/sweeps.rst",
            category="Sweeps",
        ),
    log:
        "logs/{run}/sweeps/{sae}.{method}.{sweep}.plot.log",
    benchmark:
        "benchmarks/{run}/sweeps/{sae}.{method}.{sweep}.plot.tsv"
    wildcard_constraints:
        sweep="beta|size",
    conda:
        ENV
    script:
        "../scripts/sweep_plot.py"
