from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.activations.reduce import sentence_lengths, vocab, write_max_table
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    tokens = snakemake.input.tokens
    rows, meta = write_max_table(snakemake.input.acts, snakemake.output.maxacts, tokens)
    write_parquet(sentence_lengths(tokens), snakemake.output.lengths, meta)
    write_parquet(vocab(tokens), snakemake.output.vocab, meta)
    log.info("max table: %d rows over %d pairs", rows, meta["n_pairs"])
