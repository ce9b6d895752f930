rule feature_pages:
    input:
        unpack(page_extras),
        scores="results/{run}/scores/{sae}.{method}.parquet",
        acts=shard_files("acts"),
        tokens=shard_files("tokens"),
        refs=f"results/{CORPUS}/refs.parquet",
    output:
        pages=directory("results/{run}/pages/{sae}.{method}"),
    log:
        "logs/{run}/pages/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/pages/{sae}.{method}.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "title": f"{w.sae}: bilingual features (method {w.method})",
            **config["pages"],
        },
    script:
        "../scripts/feature_pages.py"


rule page_screenshots:
    input:
        pages="results/{run}/pages/{sae}.{method}",
        scores="results/{run}/scores/{sae}.{method}.parquet",
    output:
        index=report(
            "results/{run}/pages/{sae}.{method}.index.png",
            caption="../report/page_screenshot.rst",
            category="Feature pages",
        ),
        feature=report(
            "results/{run}/pages/{sae}.{method}.top_feature.png",
            caption="../report/page_screenshot.rst",
            category="Feature pages",
        ),
    log:
        "logs/{run}/pages/{sae}.{method}.screenshots.log",
    benchmark:
        "benchmarks/{run}/pages/{sae}.{method}.screenshots.tsv"
    conda:
        ENV
    script:
        "../scripts/page_screenshots.py"
