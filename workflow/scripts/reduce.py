from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.reduce import reduce_max
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    table, meta = reduce_max(snakemake.input.acts)
    log.info("max table: %d rows over %d pairs", table.height, meta["n_pairs"])
    write_parquet(table, snakemake.output.maxacts, meta, byte_stream_split=["value"])
