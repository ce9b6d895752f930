# Hub: the fetch rules, the only jobs that reach a hub. They are localrules (Snakefile): under
# `--profile profiles/slurm` they run where Snakemake runs (the submit node, which has the
# network that compute nodes often lack) and write into resources/; every other job reads only
# resources/ and results/ and runs offline. Each pins its revision to a commit hash and records
# it with the file hashes; params are the repo and revision, so a changed revision refetches and
# an unchanged one fetches nothing. Package: polyglot_sae.hub
import os

from polyglot_sae.hub.plan import exactly, page_settings, pretrained_saes

# Every job but the fetch rules (whose scripts turn the hub back on) runs offline: a job that
# would reach the network fails at once, and the error names the fetch stage to run
# (polyglot_sae.hub.offline). Set here, so it holds for the jobs of every executor, which
# re-read this file.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")

# What comes from the hub: a `source: hf` model without local_path, the pretrained SAEs (resolved
# in sae-lens' release table now, so a misspelt id fails before any job runs), OPUS Books
# without local_path.
HUB_MODEL = config["model"]["source"] == "hf" and not config["model"]["local_path"]
PRETRAINED = pretrained_saes(SAES)
HUB_CORPUS = (
    config["corpus"]["source"] == "opus_books"
    and not config["corpus"]["opus"]["local_path"]
)


# Both write the same folders: for a hub model and for pretrained SAEs the fetch rule does.
ruleorder: fetch_model > prepare_model
ruleorder: fetch_sae > build_sae


rule fetch_model:
    output:
        model=directory("resources/models/{model}"),
    log:
        "logs/models/{model}.fetch.log",
    benchmark:
        "benchmarks/models/{model}.fetch.tsv"
    wildcard_constraints:
        model=exactly([MODEL] if HUB_MODEL else []),
    conda:
        ENV
    params:
        cfg={k: v for k, v in config["model"].items() if k != "name"},
    script:
        "../scripts/fetch_model.py"


rule fetch_sae:
    input:
        # its width is checked against the model's before anything is extracted
        model=f"resources/models/{MODEL}",
    output:
        sae=directory(f"resources/saes/{MODEL}/{{sae}}"),
    log:
        f"logs/saes/{MODEL}/{{sae}}.fetch.log",
    benchmark:
        f"benchmarks/saes/{MODEL}/{{sae}}.fetch.tsv"
    wildcard_constraints:
        sae=exactly(PRETRAINED),
    conda:
        ENV
    params:
        cfg=lambda w: sae_entry(w),
    script:
        "../scripts/fetch_sae.py"


rule fetch_corpus:
    output:
        table="resources/corpora/{corpus}/opus.parquet",
    log:
        "logs/{corpus}/fetch_corpus.log",
    benchmark:
        "benchmarks/{corpus}/fetch_corpus.tsv"
    wildcard_constraints:
        corpus=exactly([CORPUS] if HUB_CORPUS else []),
    conda:
        ENV
    params:
        cfg={k: v for k, v in config["corpus"]["opus"].items() if k != "local_path"},
    script:
        "../scripts/fetch_corpus.py"
