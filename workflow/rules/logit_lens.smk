# Logit lens: statistics, enrichment, the join with the scores.
# Package: polyglot_sae.logit_lens


rule logit_lens:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        tokens=shard_files("tokens"),
    output:
        stats="results/{run}/logit_lens/{sae}.stats.parquet",
        enrichment="results/{run}/logit_lens/{sae}.enrichment.parquet",
        classes=report(
            "results/{run}/logit_lens/{sae}.classes.png",
            caption="../report/logit_lens_classes.rst",
            category="Logit lens",
        ),
        histogram=report(
            "results/{run}/logit_lens/{sae}.histogram.png",
            caption="../report/logit_lens_histogram.rst",
            category="Logit lens",
        ),
    log:
        "logs/{run}/logit_lens/{sae}.log",
    benchmark:
        "benchmarks/{run}/logit_lens/{sae}.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg={"langs": config["corpus"]["langs"], **config["logit_lens"]},
    script:
        "../scripts/logit_lens.py"


rule logit_lens_bilingual:
    input:
        scores="results/{run}/scores/{sae}.{method}.parquet",
        enrichment="results/{run}/logit_lens/{sae}.enrichment.parquet",
    output:
        table="results/{run}/logit_lens/{sae}.{method}.languages.parquet",
        crosstab="results/{run}/logit_lens/{sae}.{method}.crosstab.parquet",
        plot=report(
            "results/{run}/logit_lens/{sae}.{method}.languages.png",
            caption="../report/logit_lens_languages.rst",
            category="Logit lens",
        ),
    log:
        "logs/{run}/logit_lens/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/logit_lens/{sae}.{method}.tsv"
    conda:
        ENV
    params:
        langs=config["corpus"]["langs"],
    script:
        "../scripts/logit_lens_bilingual.py"
