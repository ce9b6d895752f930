import polars as pl

from polyglot_sae.atomic_io import write_parquet, write_text
from polyglot_sae.lexicon.stage import LexiconCheckConfig, lexicon_check
from polyglot_sae.paired.report import lexicon_lines
from polyglot_sae.workflow_io import from_mapping, rule_log

with rule_log(snakemake) as log:
    p = snakemake.params.cfg
    scores = {m: pl.read_parquet(path) for m, path in zip(p["methods"], snakemake.input.scores)}
    table, features = lexicon_check(
        scores, pl.scan_parquet(snakemake.input.maxacts), pl.read_parquet(snakemake.input.vocab),
        p["langs"], from_mapping(LexiconCheckConfig, p, ks=tuple(p["ks"])))
    log.info("translation-lexicon check:\n%s", table)
    write_parquet(table, snakemake.output.table, {"config": p})
    write_parquet(features, snakemake.output.features, {"config": p})
    write_text("\n".join(lexicon_lines(table)) + "\n", snakemake.output.markdown)
