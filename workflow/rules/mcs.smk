# Max cosine similarity across a ladder of dictionaries.
# Package: polyglot_sae.mcs


rule train_ladder_sae:
    input:
        acts=lambda w: sae_inputs(w)["acts"],
        model=f"resources/models/{MODEL}",
    output:
        sae=directory(f"resources/saes/{MODEL}/ladder/{{sae}}/w{{width}}-s{{seed}}"),
    log:
        f"logs/saes/{MODEL}/ladder/{{sae}}/w{{width}}-s{{seed}}.log",
    benchmark:
        f"benchmarks/saes/{MODEL}/ladder/{{sae}}/w{{width}}-s{{seed}}.tsv"
    wildcard_constraints:
        width=r"\d+",
        seed=r"\d+",
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: ladder_entry(w.sae, int(w.width), int(w.seed)),
    script:
        "../scripts/build_sae.py"


rule mcs:
    input:
        unpack(lambda w: {f"d{i}": m["path"] for i, m in enumerate(ladder(w.sae))}),
    output:
        ladder="results/{run}/mcs/{sae}.ladder.parquet",
        emd="results/{run}/mcs/{sae}.emd.parquet",
        features="results/{run}/mcs/{sae}.features.parquet",
        histogram=report(
            "results/{run}/mcs/{sae}.histogram.png",
            caption="../report/mcs_histogram.rst",
            category="Dictionaries",
        ),
        widths=report(
            "results/{run}/mcs/{sae}.widths.png",
            caption="../report/mcs_widths.rst",
            category="Dictionaries",
        ),
    log:
        "logs/{run}/mcs/{sae}.log",
    benchmark:
        "benchmarks/{run}/mcs/{sae}.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: {
            "members": [{k: m[k] for k in ("name", "seed")} for m in ladder(w.sae)],
            **{k: v for k, v in config["mcs"].items() if k not in ("widths", "seeds")},
        },
    script:
        "../scripts/mcs.py"


rule mcs_bilingual:
    input:
        features="results/{run}/mcs/{sae}.features.parquet",
        scores="results/{run}/scores/{sae}.{method}.parquet",
    output:
        test="results/{run}/mcs/{sae}.{method}.bilingual.json",
        scatter=report(
            "results/{run}/mcs/{sae}.{method}.scatter.png",
            caption="../report/mcs_scatter.rst",
            category="Dictionaries",
        ),
    log:
        "logs/{run}/mcs/{sae}.{method}.bilingual.log",
    benchmark:
        "benchmarks/{run}/mcs/{sae}.{method}.bilingual.tsv"
    conda:
        ENV
    params:
        cfg={"threshold": config["mcs"]["threshold"]},
    script:
        "../scripts/mcs_bilingual.py"
