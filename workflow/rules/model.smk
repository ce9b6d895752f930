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


# Each SAE against the model (its hook exists; an SAE from elsewhere reads the hook's width)
# before the jobs that serve every SAE at once: one bad entry must fail here, not there, where
# Snakemake would first delete the other SAEs' finished outputs.
rule check_sae:
    input:
        unpack(check_inputs),
        model=f"resources/models/{MODEL}",
    output:
        check=f"resources/saes/{MODEL}/{{sae}}.check.json",
    log:
        f"logs/saes/{MODEL}/{{sae}}.check.log",
    benchmark:
        f"benchmarks/saes/{MODEL}/{{sae}}.check.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: sae_entry(w),
    script:
        "../scripts/check_sae.py"


# One job for every hook with a trained SAE: the model runs once, to the deepest.
if TRAIN_HOOKS:

    rule cache_train_acts:
        input:
            model=f"resources/models/{MODEL}",
            pairs=f"results/{CORPUS}/split/train.parquet",
            checks=[ancient(sae_check(s)) for ids in TRAIN_HOOKS.values() for s in ids],
        output:
            acts=[train_acts(hook) for hook in TRAIN_HOOKS],
        log:
            f"logs/{CORPUS}/train_acts/{MODEL}.log",
        benchmark:
            f"benchmarks/{CORPUS}/train_acts/{MODEL}.tsv"
        conda:
            ENV
        threads: 2
        params:
            cfg={
                "hooks": list(TRAIN_HOOKS),
                "sae_ids": list(TRAIN_HOOKS.values()),
                "extract": config["extract"],
            },
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
    conda:
        ENV
    threads: 2
    params:
        cfg=lambda w: train_params(sae_entry(w)),
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
