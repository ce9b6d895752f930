# The hook-point sweep: the layer profile over the SAEs at different hooks.
# Package: polyglot_sae.layers


rule layer_profile:
    input:
        unpack(layer_inputs),
    output:
        table="results/{run}/sweeps/layers.parquet",
    log:
        "logs/{run}/sweeps/layers.log",
    benchmark:
        "benchmarks/{run}/sweeps/layers.tsv"
    conda:
        ENV
    params:
        cfg=lambda w: {
            "saes": [SAES[s] for s in LAYER_SAES],
            "langs": config["corpus"]["langs"],
            "layers": {k: v for k, v in config["layers"].items() if k != "saes"},
        },
    script:
        "../scripts/layer_profile.py"


rule layer_figure:
    input:
        table="results/{run}/sweeps/layers.parquet",
    output:
        figure=report(
            "results/{run}/sweeps/layers.png",
            caption="../report/layers.rst",
            category="Sweeps",
        ),
    log:
        "logs/{run}/sweeps/layers.figure.log",
    benchmark:
        "benchmarks/{run}/sweeps/layers.figure.tsv"
    conda:
        ENV
    params:
        cfg={"langs": config["corpus"]["langs"]},
    script:
        "../scripts/layer_figure.py"
