# The paired method (polyglot_sae.paired): correlation statistics with a bootstrap bound, then the
# classes from their thresholds (so a threshold change reruns only the classification), the
# paraphrase ceiling's extraction, the figure and the translation-lexicon check.


def paraphrase_sources(wildcards):
    """A files paraphrase is a local file: editing it reruns the alignment."""
    if PARAPHRASE and PARAPHRASE["source"] == "files":
        return {"file": PARAPHRASE["file"]}
    return {}


rule paraphrase:
    input:
        unpack(paraphrase_sources),
        pairs="results/{corpus}/pairs.parquet",
        refs="results/{corpus}/refs.parquet",
    output:
        pairs="results/{corpus}/paraphrase.parquet",
        stats="results/{corpus}/paraphrase_stats.json",
    log:
        "logs/{corpus}/paraphrase.log",
    benchmark:
        "benchmarks/{corpus}/paraphrase.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: PARAPHRASE,
    script:
        "../scripts/paraphrase.py"


use rule extract as extract_paraphrase with:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        pairs=ancient(f"results/{CORPUS}/split/score.parquet"),
        manifest=ancient(f"results/{CORPUS}/shards.json"),
        paraphrase=f"results/{CORPUS}/paraphrase.parquet",
    output:
        acts="results/{run}/para_acts/{sae}/{shard}.parquet",
        tokens="results/{run}/para_tokens/{sae}/{shard}.parquet",
    log:
        "logs/{run}/extract_paraphrase/{sae}/{shard}.log",
    benchmark:
        "benchmarks/{run}/extract_paraphrase/{sae}/{shard}.tsv"
    params:
        cfg=lambda w: extract_params(w, [f"{PARAPHRASE['lang']}_para"]),


use rule reduce as reduce_paraphrase with:
    input:
        acts=shard_files("para_acts"),
        tokens=shard_files("para_tokens"),
    output:
        maxacts="results/{run}/maxacts/{sae}.para.parquet",
        lengths="results/{run}/maxacts/{sae}.para.lengths.parquet",
        vocab="results/{run}/maxacts/{sae}.para.vocab.parquet",
    log:
        "logs/{run}/reduce_paraphrase/{sae}.log",
    benchmark:
        "benchmarks/{run}/reduce_paraphrase/{sae}.tsv"


def paraphrase_table(wildcards):
    if not PARAPHRASE:
        return {}
    base = f"results/{wildcards.run}/maxacts/{wildcards.sae}.para"
    return {"paraphrase": f"{base}.parquet", "paraphrase_lengths": f"{base}.lengths.parquet"}


rule paired_stats:
    input:
        unpack(paraphrase_table),
        maxacts="results/{run}/maxacts/{sae}.parquet",
        lengths="results/{run}/maxacts/{sae}.lengths.parquet",
        vocab="results/{run}/maxacts/{sae}.vocab.parquet",
    output:
        stats="results/{run}/paired/{sae}.stats.parquet",
    log:
        "logs/{run}/paired/{sae}.stats.log",
    benchmark:
        "benchmarks/{run}/paired/{sae}.stats.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "paraphrase_of": PARAPHRASE["lang"] if PARAPHRASE else None,
            **{k: v for k, v in config["paired"].items() if k != "classes"},
        },
    script:
        "../scripts/paired_stats.py"


rule paired_classes:
    input:
        stats="results/{run}/paired/{sae}.stats.parquet",
    output:
        scores="results/{run}/scores/{sae}.paired.parquet",
    log:
        "logs/{run}/paired/{sae}.classes.log",
    benchmark:
        "benchmarks/{run}/paired/{sae}.classes.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "classes": config["paired"]["classes"],
        },
    script:
        "../scripts/paired_classes.py"


rule paired_figure:
    input:
        scores="results/{run}/scores/{sae}.paired.parquet",
        words="results/{run}/paired/{sae}.words.parquet",
    output:
        figure=report(
            "results/{run}/paired/{sae}.ceiling.png",
            caption="../report/paired_ceiling.rst",
            category="Paired method",
        ),
    log:
        "logs/{run}/paired/{sae}.figure.log",
    benchmark:
        "benchmarks/{run}/paired/{sae}.figure.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {"langs": config["corpus"]["langs"], "top_k": config["report"]["top_k"]},
    script:
        "../scripts/paired_figure.py"


rule feature_words:
    input:
        maxacts="results/{run}/maxacts/{sae}.parquet",
        vocab="results/{run}/maxacts/{sae}.vocab.parquet",
    output:
        words="results/{run}/paired/{sae}.words.parquet",
    log:
        "logs/{run}/paired/{sae}.words.log",
    benchmark:
        "benchmarks/{run}/paired/{sae}.words.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "top_words": config["lexicon"]["top_words"],
        },
    script:
        "../scripts/feature_words.py"


rule lexicon_check:
    input:
        scores=expand(
            "results/{{run}}/scores/{{sae}}.{method}.parquet", method=METHODS
        ),
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


rule paired_size_ablation:
    input:
        unpack(paraphrase_table),
        maxacts="results/{run}/maxacts/{sae}.parquet",
        lengths="results/{run}/maxacts/{sae}.lengths.parquet",
        vocab="results/{run}/maxacts/{sae}.vocab.parquet",
        pairs=f"results/{CORPUS}/split/score.parquet",
    output:
        table="results/{run}/sweeps/{sae}.paired.size.parquet",
        plot=report(
            "results/{run}/sweeps/{sae}.paired.size.png",
            caption="../report/size_ablation.rst",
            category="Sweeps",
        ),
    log:
        "logs/{run}/sweeps/{sae}.paired.size.log",
    benchmark:
        "benchmarks/{run}/sweeps/{sae}.paired.size.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "paraphrase_of": PARAPHRASE["lang"] if PARAPHRASE else None,
            "paired": config["paired"],
            **{
                k: config["sweeps"][k]
                for k in ("ablation_sizes", "bootstrap", "seed", "top_k")
            },
        },
    script:
        "../scripts/paired_size_ablation.py"
