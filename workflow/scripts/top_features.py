import polars as pl

from polyglot_sae.examples import markdown_table, top_examples
from polyglot_sae.parquet_io import write_parquet
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    p, w = snakemake.params.cfg, snakemake.wildcards
    examples = top_examples(
        pl.read_parquet(snakemake.input.scores), pl.read_parquet(snakemake.input.maxacts),
        snakemake.input.acts, snakemake.input.tokens, pl.read_parquet(snakemake.input.refs),
        top_k=p["top_k"], n_examples=p["n_examples"],
    )
    write_parquet(examples, snakemake.output.table)
    with open(snakemake.output.markdown, "w") as fh:
        fh.write(markdown_table(examples, p["langs"], f"Top {p['top_k']} features: {w.sae}, method {w.method}"))
    log.info("%d example rows", examples.height)
