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
