# The paired method: statistics with the bootstrap bound, then the classes (a threshold change reruns only these), words, figure, size ablation.
# Package: polyglot_sae.paired


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


rule word_stats:
    input:
        acts=shard_files("acts"),
        tokens=shard_files("tokens"),
        pairs=f"results/{CORPUS}/split/score.parquet",
        links=expand(f"results/{CORPUS}/align/{{pair}}.parquet", pair=LANG_PAIRS),
        # Only its tokenizer is read; the extraction tables carry the model's numbers.
        model=ancient(f"resources/models/{MODEL}"),
    output:
        stats="results/{run}/paired/{sae}.word_stats.parquet",
        examples="results/{run}/paired/{sae}.word_examples.parquet",
    log:
        "logs/{run}/paired/{sae}.word_stats.log",
    benchmark:
        "benchmarks/{run}/paired/{sae}.word_stats.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "n_examples": config["report"]["n_examples"],
            **{k: config["paired"][k] for k in ("bootstrap", "level", "seed")},
        },
    script:
        "../scripts/word_stats.py"


rule paired_classes:
    input:
        unpack(word_stats_table),
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
        cfg=lambda w: {
            "langs": config["corpus"]["langs"],
            "top_k": config["report"]["top_k"],
        },
    script:
        "../scripts/paired_figure.py"


rule word_figure:
    input:
        scores="results/{run}/scores/{sae}.paired.parquet",
    output:
        figure=report(
            "results/{run}/paired/{sae}.word_level.png",
            caption="../report/word_level.rst",
            category="Paired method",
        ),
    log:
        "logs/{run}/paired/{sae}.word_figure.log",
    benchmark:
        "benchmarks/{run}/paired/{sae}.word_figure.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {"langs": config["corpus"]["langs"]},
    script:
        "../scripts/word_figure.py"


rule paired_size_ablation:
    input:
        unpack(paraphrase_table),
        maxacts="results/{run}/maxacts/{sae}.parquet",
        lengths="results/{run}/maxacts/{sae}.lengths.parquet",
        vocab="results/{run}/maxacts/{sae}.vocab.parquet",
        pairs=f"results/{CORPUS}/split/score.parquet",
    output:
        table="results/{run}/sweeps/{sae}.paired.size.parquet",
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
            # verse level only: the word-level thresholds do not reach the size sweep
            "paired": {
                **config["paired"],
                "classes": {
                    k: v
                    for k, v in config["paired"]["classes"].items()
                    if k not in WORD_THRESHOLDS
                },
            },
            **{
                k: config["sweeps"][k]
                for k in ("ablation_sizes", "bootstrap", "seed", "top_k")
            },
        },
    script:
        "../scripts/paired_size_ablation.py"
