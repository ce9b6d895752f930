# Report: top features with examples, feature pages and their screenshots, the summary.
# Package: polyglot_sae.report


rule top_features:
    input:
        scores="results/{run}/scores/{sae}.{method}.parquet",
        maxacts="results/{run}/maxacts/{sae}.parquet",
        acts=shard_files("acts"),
        tokens=shard_files("tokens"),
        refs=f"results/{CORPUS}/refs.parquet",
    output:
        table="results/{run}/top_features/{sae}.{method}.parquet",
        markdown="results/{run}/top_features/{sae}.{method}.md",
    log:
        "logs/{run}/top_features/{sae}.{method}.log",
    benchmark:
        "benchmarks/{run}/top_features/{sae}.{method}.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "top_k": config["report"]["top_k"],
            "n_examples": config["report"]["n_examples"],
            "langs": config["corpus"]["langs"],
        },
    script:
        "../scripts/top_features.py"


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
            **page_settings(config["pages"], PRETRAINED.get(w.sae)),
        },
    script:
        "../scripts/feature_pages.py"


rule explorer:
    input:
        unpack(explorer_inputs),
        acts=shard_files("acts"),
        tokens=shard_files("tokens"),
        refs=f"results/{CORPUS}/refs.parquet",
        words="results/{run}/paired/{sae}.words.parquet",
    output:
        pages=directory("results/{run}/pages/{sae}"),
    log:
        "logs/{run}/pages/{sae}.explorer.log",
    benchmark:
        "benchmarks/{run}/pages/{sae}.explorer.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "title": f"{w.sae}: bilingual features (method paired)",
            **page_settings(config["pages"], PRETRAINED.get(w.sae)),
        },
    script:
        "../scripts/explorer.py"


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


rule summary:
    input:
        unpack(paired_summary_inputs),
        unpack(causal_summary_inputs),
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


# The run's validated config beside its results, for polyglot_sae.open_run (every key: any
# change rewrites it, and nothing else reads it).
rule run_config:
    output:
        config="results/{run}/config.json",
    log:
        "logs/{run}/config.log",
    benchmark:
        "benchmarks/{run}/config.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: config,
    script:
        "../scripts/run_config.py"
