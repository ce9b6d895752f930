import polars as pl

from polyglot_sae.atomic_io import write_json
from polyglot_sae.corpus.pairs import shard_manifest
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    manifest = shard_manifest(pl.read_parquet(snakemake.input.pairs), snakemake.params.shard_pairs)
    log.info("%d shards of at most %d pairs", len(manifest["shards"]), snakemake.params.shard_pairs)
    write_json(manifest, snakemake.output.manifest)
