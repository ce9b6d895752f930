from polyglot_sae.atomic_io import write_json
from polyglot_sae.device import resolve_device
from polyglot_sae.model.load import check_hook, load_model
from polyglot_sae.model.saes import check_sae_fits, hook_width, load_sae
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    entry = snakemake.params.cfg
    model = load_model(snakemake.input.model, device=resolve_device("auto"))
    where = f"config saes[{entry['id']}]"
    check_hook(model, entry["hook"], where)
    if "sae" in snakemake.input.keys():  # a trained SAE fits its hook by construction
        check_sae_fits(load_sae(snakemake.input.sae), model, entry["hook"],
                       f"{where} ({snakemake.input.sae})")
    width = hook_width(model, entry["hook"])
    log.info("%s reads %s (width %d)", entry["id"], entry["hook"], width)
    write_json({"sae": entry["id"], "hook": entry["hook"], "width": width},
               snakemake.output.check)
