from pathlib import Path

from polyglot_sae.model.load import load_spec
from polyglot_sae.model.training import TrainConfig, train_from_cache
from polyglot_sae.model.saes import SAESourceConfig, import_sae
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    entry = snakemake.params.cfg
    model_name = load_spec(snakemake.input.model)["tl_name"]
    if entry["source"] == "train":
        info = train_from_cache(snakemake.input.acts, from_mapping(TrainConfig, entry["train"]),
                                hook=entry["hook"], model_name=model_name,
                                out_dir=Path(snakemake.output.sae))
        log.info("trained %s: %s", entry["id"], info)
    else:
        import_sae(from_mapping(SAESourceConfig, entry), entry["hook"], model_name,
                   snakemake.output.sae)
        log.info("imported %s from %s", entry["id"], entry["source"])
