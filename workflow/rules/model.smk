# Model and SAEs: the offline model folder, the cached training activations, the SAEs and their quality.
# Package: polyglot_sae.model


rule prepare_model:
    output:
        model=directory("resources/models/{model}"),
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg={k: v for k, v in config["model"].items() if k != "name"},
    script:
        "../scripts/prepare_model.py"


rule cache_train_acts:
    input:
        model=f"resources/models/{MODEL}",
        pairs=f"results/{CORPUS}/split/train.parquet",
    output:
        acts=f"results/{CORPUS}/train_acts/{MODEL}/{{hook}}.safetensors",
    log:
        f"logs/{CORPUS}/train_acts/{MODEL}/{{hook}}.log",
    benchmark:
        f"benchmarks/{CORPUS}/train_acts/{MODEL}/{{hook}}.tsv"
    # before the SAEs (priority 1): the first job caches every hook, the others take theirs
    priority: 2
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: {"hook": w.hook, "extract": config["extract"]},
    script:
        "../scripts/cache_train_acts.py"


rule build_sae:
    input:
        unpack(sae_inputs),
        model=f"resources/models/{MODEL}",
    output:
        sae=directory(f"resources/saes/{MODEL}/{{sae}}"),
    log:
        f"logs/saes/{MODEL}/{{sae}}.log",
    benchmark:
        f"benchmarks/saes/{MODEL}/{{sae}}.tsv"
    # every SAE built before the extractions start, so that the first extraction of a shard
    # finds them all and serves them in one pass (polyglot_sae.activations.shared)
    priority: 1
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: sae_entry(w),
    script:
        "../scripts/build_sae.py"


rule evaluate_sae:
    input:
        model=f"resources/models/{MODEL}",
        sae=f"resources/saes/{MODEL}/{{sae}}",
        pairs=f"results/{CORPUS}/split/score.parquet",
    output:
        quality="results/{run}/sae_quality/{sae}.json",
    log:
        "logs/{run}/evaluate_sae/{sae}.log",
    benchmark:
        "benchmarks/{run}/evaluate_sae/{sae}.tsv"
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: {
            "hook": sae_entry(w)["hook"],
            "eval_pairs": config["report"]["eval_pairs"],
            "extract": config["extract"],
        },
    script:
        "../scripts/evaluate_sae.py"
