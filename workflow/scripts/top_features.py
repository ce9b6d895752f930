import polars as pl

from polyglot_sae.report.examples import markdown_table, top_examples
from polyglot_sae.atomic_io import write_parquet, write_text
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    p, w = snakemake.params.cfg, snakemake.wildcards
    examples = top_examples(
        pl.read_parquet(snakemake.input.scores), pl.read_parquet(snakemake.input.maxacts),
        snakemake.input.acts, snakemake.input.tokens, pl.read_parquet(snakemake.input.refs),
        top_k=p["top_k"], n_examples=p["n_examples"],
    )
    write_parquet(examples, snakemake.output.table)
    title = f"Top {p['top_k']} features: {w.sae}, method {w.method}"
    write_text(markdown_table(examples, p["langs"], title), snakemake.output.markdown)
    log.info("%d example rows", examples.height)
