rule prepare_model:
    output:
        model=directory("resources/models/{model}"),
    params:
        cfg={k: v for k, v in config["model"].items() if k != "name"},
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    conda:
        ENV
    threads: 2
    script:
        "../scripts/prepare_model.py"
