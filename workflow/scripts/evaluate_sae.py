import polars as pl

from polyglot_sae.activations.extract import ExtractConfig
from polyglot_sae.device import resolve_device
from polyglot_sae.model.load import check_hook, load_model
from polyglot_sae.atomic_io import write_json
from polyglot_sae.activations.sae_eval import evaluate_sae
from polyglot_sae.model.saes import check_sae_fits, load_sae
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    cfg = from_mapping(ExtractConfig, p["extract"])
    device = resolve_device(cfg.device)
    model = load_model(snakemake.input.model, device=device)
    sae = load_sae(snakemake.input.sae, device=device)
    where = f"config saes[{snakemake.wildcards.sae}] ({snakemake.input.sae})"
    check_hook(model, p["hook"], where)
    check_sae_fits(sae, model, p["hook"], where)
    pairs = pl.read_parquet(snakemake.input.pairs)
    pairs = pairs.filter(pl.col("pair_id").is_in(pairs["pair_id"].unique().sort()[: p["eval_pairs"]]))
    quality = evaluate_sae(model, sae, p["hook"], pairs, cfg)
    log.info("quality: %s", quality)
    write_json({"hook": p["hook"], "d_sae": sae.cfg.d_sae, "eval_pairs": p["eval_pairs"],
                "per_language": quality}, snakemake.output.quality)
