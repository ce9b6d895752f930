import polars as pl

from polyglot_sae.report.browser import page_screenshots
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake):
    top = pl.read_parquet(snakemake.input.scores).filter(pl.col("rank") == 0)["feature_id"]
    page_screenshots(snakemake.input.pages, snakemake.output.index, snakemake.output.feature,
                     feature_id=int(top[0]))
