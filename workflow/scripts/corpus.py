from dataclasses import replace

from polyglot_sae.corpus.pairs import CorpusConfig, load_pairs
from polyglot_sae.atomic_io import write_json, write_parquet
from polyglot_sae.workflow_io import rule_log

with rule_log(snakemake) as log:
    c = snakemake.params.cfg
    cfg = CorpusConfig(
        source=c["source"], langs=tuple(c["langs"]), drop_empty=c["drop_empty"],
        sword_dir=c["sword"].get("dir", "/usr/share/sword"), sword_modules=c["sword"].get("modules", {}),
        files=c["files"], **{f"opus_{k}": v for k, v in c["opus"].items() if k != "revision"},
    )
    if "hub" in snakemake.input.keys():  # OPUS from the hub, as the fetch_corpus rule wrote it
        cfg = replace(cfg, opus_local_path=snakemake.input.hub)
    pairs, refs, counts = load_pairs(cfg)
    log.info("corpus %s: %s", snakemake.wildcards.corpus, counts)
    write_parquet(refs, snakemake.output.refs)
    write_json({**counts, "langs": list(cfg.langs)}, snakemake.output.stats)
    write_parquet(pairs, snakemake.output.pairs, {"langs": list(cfg.langs), **counts})
