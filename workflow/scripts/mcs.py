from polyglot_sae.mcs.dictionaries import write_ladder
from polyglot_sae.mcs.core import McsConfig
from polyglot_sae.mcs.ladder import Dictionary, compare_ladder
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    dictionaries = [Dictionary(m["name"], snakemake.input[f"d{i}"], m["seed"])
                    for i, m in enumerate(p["members"])]
    config = from_mapping(McsConfig, p, random_seeds=tuple(p["random_seeds"]))
    result = compare_ladder(dictionaries, snakemake.wildcards.sae, config=config)
    log.info("ladder against %s:\n%s", result["reference"], result["ladder"])
    write_ladder(result, snakemake.output, scored=snakemake.wildcards.sae, config=config)
