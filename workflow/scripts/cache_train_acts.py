import polars as pl

from polyglot_sae.activations.extract import ExtractConfig, hook_groups, save_dense_activations
from polyglot_sae.device import resolve_device
from polyglot_sae.model.load import check_hook, load_model
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    cfg = from_mapping(ExtractConfig, snakemake.params.cfg["extract"])
    hooks = snakemake.params.cfg["hooks"]
    model = load_model(snakemake.input.model, device=resolve_device(cfg.device))
    for hook, sae_ids in zip(hooks, snakemake.params.cfg["sae_ids"]):
        check_hook(model, hook, f"config saes[{', '.join(sae_ids)}]")
    for engine, group in hook_groups(model, hooks, cfg):
        log.info("forward pass (%s) to %s", "lean" if engine else "transformer_lens",
                 ", ".join(group))
    n = save_dense_activations(model, hooks, pl.read_parquet(snakemake.input.pairs), cfg,
                               list(snakemake.output.acts))
    log.info("cached %d training tokens at %d hooks", n, len(hooks))
