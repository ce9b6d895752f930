from polyglot_sae.mcs.dictionaries import mcs_of_bilingual_features
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    test = mcs_of_bilingual_features(snakemake.input.features, snakemake.input.scores,
                                     snakemake.output.test, snakemake.output.scatter,
                                     threshold=snakemake.params.cfg["threshold"],
                                     note=f"SAE {snakemake.wildcards.sae}, method "
                                          f"{snakemake.wildcards.method}")
    log.info("significant bilingual vs other alive features: %s", test)
