from polyglot_sae.layers.profile import LayerConfig
from polyglot_sae.layers.stage import layer_profile_file
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    names = [k for k in ("quality", "paired", "maxacts", "para", "enrichment")
             if k in snakemake.input.keys()]
    files = [dict(zip(names, row)) for row in zip(*(snakemake.input[k] for k in names))]
    table = layer_profile_file(p["saes"], files, p["langs"], snakemake.output.table,
                               from_mapping(LayerConfig, p["layers"]))
    log.info("layer profile: %d hooks", table.height)
