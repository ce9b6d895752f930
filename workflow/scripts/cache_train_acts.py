import polars as pl

from polyglot_sae.activations.extract import ExtractConfig, resolve_device, save_dense_activations
from polyglot_sae.model.load import check_hook, load_model
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    cfg = from_mapping(ExtractConfig, snakemake.params.cfg["extract"])
    hook = snakemake.params.cfg["hook"]
    model = load_model(snakemake.input.model, device=resolve_device(cfg.device))
    check_hook(model, hook, f"config saes[] with hook {hook}")
    n = save_dense_activations(model, hook, pl.read_parquet(snakemake.input.pairs), cfg,
                               snakemake.output.acts)
    log.info("cached %d training tokens at %s", n, hook)
