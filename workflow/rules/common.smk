# Paths, wildcard constraints and the per-rule parameter dicts (one dict per rule, so that
# Snakemake's params tracking reruns exactly what a config change affects).
import json
import sys
from pathlib import Path

from polyglot_sae.align.stage import language_pairs
from polyglot_sae.errors import InputError
from polyglot_sae.layers.profile import check_one_per_hook
from polyglot_sae.paired.classes import WORD_THRESHOLDS

RUN = config["run"]
CORPUS = config["corpus"]["name"]
MODEL = config["model"]["name"]
SAES = {s["id"]: s for s in config["saes"]}
METHODS = config["score"]["methods"]
# The seed's two methods rank by the BI score; their figures, sweeps and null do not apply to
# `paired`, which has its own (workflow/rules/paired.smk).
BI_METHODS = [m for m in METHODS if m != "paired"]
PAIRED = "paired" in METHODS
PARAPHRASE = config["corpus"].get("paraphrase")
# The paired method's word-level evidence (align stage, word_stats): on unless align.enabled is off.
WORD_LEVEL = PAIRED and config["align"]["enabled"]
# The class thresholds only the word level reads (polyglot_sae.paired.classes).
WORD_CLASS_KEYS = ("min_cofire_word", "concept_r_word_lo", "concept_lift", "lex_word")
LEXICON = config["lexicon"]["enabled"]
LOGIT_LENS = config["logit_lens"]["enabled"]
CAUSAL = config["causal"]["enabled"]
ENV = "../../envs/polyglot-sae.yaml"
# The word alignment's language pairs (polyglot_sae.align.stage.language_pairs: every pair).
LANG_PAIRS = [
    f"{a}-{b}"
    for i, a in enumerate(config["corpus"]["langs"])
    for b in config["corpus"]["langs"][i + 1 :]
]
SUMMARY = f"results/{RUN}/summary.md"


wildcard_constraints:
    sae=r"[A-Za-z0-9_-]+",
    shard=r"\d{5}",
    method="exact|seed|paired",
    model=r"[A-Za-z0-9_.-]+",
    corpus=r"[A-Za-z0-9_.-]+",
    run=r"[A-Za-z0-9_.-]+",
    hook=r"[A-Za-z0-9_.]+",


def split_params(wildcards):
    """What each part depends on: the training pairs not on how many pairs are scored."""
    s = config["split"]
    params = {"seed": s["seed"], "train_pairs": s["train_pairs"]}
    if wildcards.part == "score":
        params["score_pairs"] = s["score_pairs"]
    return params


def corpus_sources(wildcards):
    """Local corpus files, so that editing or growing them reruns the corpus (SWORD modules are
    system packages, the hub is not a file)."""
    c = config["corpus"]
    if c["source"] == "files":
        return dict(c["files"])
    if c["source"] == "opus_books" and c.get("opus", {}).get("local_path"):
        return {"opus": c["opus"]["local_path"]}
    if c["source"] == "opus_books":  # the fetch_corpus rule's copy (hub.smk)
        return {"hub": f"resources/corpora/{wildcards.corpus}/opus.parquet"}
    return {}


def shard_manifest():
    """The scored pairs' shards (id -> pair count and content digest), written by the `shards`
    checkpoint: their number depends on the corpus, so the DAG grows once it is known.
    """
    with open(checkpoints.shards.get(corpus=CORPUS).output.manifest) as f:
        return json.load(f)["shards"]


def shard_files(kind):
    """Input function: one SAE's per-shard files of `kind` (acts or tokens)."""

    def files(wildcards):
        return [
            f"results/{wildcards.run}/{kind}/{wildcards.sae}/{shard}.parquet"
            for shard in shard_manifest()
        ]

    return files


def sae_entry(wildcards):
    return SAES[wildcards.sae]


def sae_inputs(wildcards):
    """Trained SAEs need the cached training activations at their hook; others nothing."""
    entry = sae_entry(wildcards)
    if entry["source"] != "train":
        return {}
    return {"acts": f"results/{CORPUS}/train_acts/{MODEL}/{entry['hook']}.safetensors"}


def ladder_entry(sae, width, seed):
    """A ladder SAE: the trained SAE's settings at another width and seed."""
    entry = SAES[sae]
    return {
        **entry,
        "id": f"{sae}/w{width}-s{seed}",
        "train": {**entry.get("train", {}), "d_sae": width, "seed": seed},
    }


def ladder(sae):
    """The dictionaries compared with SAE `sae` (MCS): itself, the other configured SAEs at its
    hook (a pretrained ladder, e.g. GemmaScope 16k and 65k) and, for a trained SAE, the widths
    and seeds of `mcs` trained on the same cached activations."""
    entry = SAES[sae]
    members = [
        {
            "name": s,
            "seed": SAES[s].get("train", {}).get("seed", 0),
            "path": f"resources/saes/{MODEL}/{s}",
        }
        for s in [sae]
        + [o for o in SAES if o != sae and SAES[o]["hook"] == entry["hook"]]
    ]
    if entry["source"] == "train":
        members += [
            {
                "name": f"w{w}-s{s}",
                "seed": s,
                "path": f"resources/saes/{MODEL}/ladder/{sae}/w{w}-s{s}",
            }
            for w in config["mcs"]["widths"]
            for s in config["mcs"]["seeds"]
        ]
    return members


LADDERS = [s for s in SAES if len(ladder(s)) > 1]
FIGURES = [
    f"results/{RUN}/config.json",
    *expand("results/{run}/figures/{sae}.activation_share.png", run=RUN, sae=SAES),
    *expand(
        "results/{run}/figures/{sae}.{method}.bi_curve.png",
        run=RUN,
        sae=SAES,
        method=BI_METHODS,
    ),
    *expand(
        "results/{run}/sweeps/{sae}.{method}.{sweep}.png",
        run=RUN,
        sae=SAES,
        method=BI_METHODS,
        sweep=["beta", "size"] if config["score"]["permutations"] else ["beta"],
    ),
    *expand(
        "results/{run}/mcs/{sae}.{plot}.png",
        run=RUN,
        sae=LADDERS,
        plot=["histogram", "widths"],
    ),
    *expand(
        "results/{run}/mcs/{sae}.{method}.scatter.png",
        run=RUN,
        sae=LADDERS,
        method=BI_METHODS,
    ),
    *expand(
        "results/{run}/pages/{sae}.{method}.{shot}.png",
        run=RUN,
        sae=SAES,
        method=METHODS,
        shot=["index", "top_feature"] if config["pages"]["screenshots"] else [],
    ),
    *expand(
        "results/{run}/pages/{sae}.{method}",
        run=RUN,
        sae=SAES,
        method=METHODS,
    ),
    *expand("results/{run}/pages/{sae}", run=RUN, sae=SAES if PAIRED else []),
    *expand(
        "results/{run}/logit_lens/{sae}.{plot}.png",
        run=RUN,
        sae=SAES if config["logit_lens"]["enabled"] else [],
        plot=["classes", "histogram"],
    ),
    *expand(
        "results/{run}/logit_lens/{sae}.{method}.languages.png",
        run=RUN,
        sae=SAES if config["logit_lens"]["enabled"] else [],
        method=BI_METHODS,
    ),
    *expand(
        "results/{run}/figures/{sae}.{method}.pvalues.png",
        run=RUN,
        sae=SAES,
        method=BI_METHODS if config["score"]["permutations"] else [],
    ),
    *expand(
        "results/{run}/{plot}",
        run=RUN,
        plot=[
            f"{stage}/{sae}.{name}.png"
            for sae in (SAES if PAIRED else [])
            for stage, name in (
                ("paired", "ceiling"),
                *([("paired", "word_level")] if WORD_LEVEL else []),
                ("sweeps", "paired.size"),
            )
        ],
    ),
]


def page_extras(wildcards, method=None):
    """What the feature pages show besides the scores: MCS when the SAE has a ladder, the
    logit lens and the causal check (with its whole dictionary) when they run, the
    word-level evidence for `paired`.
    """
    extras = {}
    if config["logit_lens"]["enabled"]:
        extras["logit_lens"] = (
            f"results/{wildcards.run}/logit_lens/{wildcards.sae}.stats.parquet"
        )
    if wildcards.sae in LADDERS:
        extras["mcs"] = f"results/{wildcards.run}/mcs/{wildcards.sae}.features.parquet"
    if CAUSAL:
        extras["causal"] = f"results/{wildcards.run}/causal/{wildcards.sae}.parquet"
        if config["causal"]["dictionary_sentences"]:
            extras["ablation"] = (
                f"results/{wildcards.run}/causal/{wildcards.sae}.dictionary.parquet"
            )
    if (method or wildcards.method) == "paired" and WORD_LEVEL:
        extras["word_examples"] = (
            f"results/{wildcards.run}/paired/{wildcards.sae}.word_examples.parquet"
        )
        extras["texts"] = f"results/{CORPUS}/split/score.parquet"
    return extras


def explorer_inputs(wildcards):
    """The all-features browser reads every stage's per-feature table (report/table.py) and
    what the paired pages show."""
    run, sae = wildcards.run, wildcards.sae
    files = {
        "paired": f"results/{run}/scores/{sae}.paired.parquet",
        "scores": [f"results/{run}/scores/{sae}.{m}.parquet" for m in METHODS],
        **page_extras(wildcards, "paired"),
    }
    if LEXICON:
        files["lexicon"] = f"results/{run}/lexicon/{sae}.parquet"
    return files


def print_summary(path):
    if Path(path).exists():
        print(f"\n{Path(path).read_text()}")


def paraphrase_sources(wildcards):
    """A files paraphrase is a local file: editing it reruns the alignment."""
    if PARAPHRASE and PARAPHRASE["source"] == "files":
        return {"file": PARAPHRASE["file"]}
    return {}


def extract_params(wildcards, langs):
    """What an extraction job's tables depend on: hook, SAE, the shard's content, languages.
    (Not the other SAEs, which the job may extract in the same pass: adding one must not rerun
    the others.)"""
    return {
        "hook": sae_entry(wildcards)["hook"],
        "sae_id": wildcards.sae,
        "shard": {
            "index": int(wildcards.shard),
            "shard_pairs": config["split"]["shard_pairs"],
            **shard_manifest()[wildcards.shard],
        },
        "langs": langs,
        "extract": config["extract"],
    }


def word_stats_table(wildcards):
    """The word-level statistics the paired classes join, when the word level is on."""
    if not WORD_LEVEL:
        return {}
    return {
        "word_stats": f"results/{wildcards.run}/paired/{wildcards.sae}.word_stats.parquet"
    }


def paraphrase_table(wildcards):
    if not PARAPHRASE:
        return {}
    base = f"results/{wildcards.run}/maxacts/{wildcards.sae}.para"
    return {
        "paraphrase": f"{base}.parquet",
        "paraphrase_lengths": f"{base}.lengths.parquet",
    }


def paired_summary_inputs(wildcards):
    """The paired method's extras: words, the lexicon check, the paraphrase alignment, the
    layer profile."""
    if not PAIRED:
        return {}
    extras = {
        "words": expand(
            f"results/{wildcards.run}/paired/{{sae}}.words.parquet", sae=SAES
        )
    }
    if LEXICON:
        extras["lexicon"] = expand(
            f"results/{wildcards.run}/lexicon/{{sae}}.parquet", sae=SAES
        )
    if PARAPHRASE:
        extras["paraphrase"] = f"results/{CORPUS}/paraphrase_stats.json"
    if LAYER_SAES:
        extras["layers"] = f"results/{wildcards.run}/sweeps/layers.parquet"
    return extras


def causal_summary_inputs(wildcards):
    """The causal check's tables, one per SAE, when it runs."""
    if not CAUSAL:
        return {}
    files = {
        "causal": expand(f"results/{wildcards.run}/causal/{{sae}}.parquet", sae=SAES)
    }
    if config["causal"]["dictionary_sentences"]:
        files["dictionary"] = expand(
            f"results/{wildcards.run}/causal/{{sae}}.dictionary.parquet", sae=SAES
        )
    return files


def layer_saes():
    """The SAEs of the layer profile: those of `layers.saes`, checked (known ids, one per hook);
    unset, every SAE when each sits at its own hook (else none, with a note on how to choose).
    The profile is planned when they span two or more hooks and the paired method runs.
    """
    chosen = config["layers"]["saes"]
    ids = chosen or list(SAES)
    unknown = [i for i in ids if i not in SAES]
    if unknown:
        raise InputError(
            "config layers.saes",
            "saes",
            f"no SAE with id {unknown} (saes[] has {list(SAES)})",
            "list ids of saes[] entries",
        )
    hooks = [SAES[i]["hook"] for i in ids]
    if not PAIRED or len(set(hooks)) < 2:
        return []
    if chosen is None and len(set(hooks)) < len(hooks):
        print(
            "note: no layer profile: several SAEs share a hook; list one SAE per hook in "
            "layers.saes to get it",
            file=sys.stderr,
        )
        return []
    check_one_per_hook([SAES[i] for i in ids])
    return ids


def layer_inputs(wildcards):
    """Per profiled SAE, the tables its row is read from."""
    run = wildcards.run
    files = {
        "quality": [f"results/{run}/sae_quality/{s}.json" for s in LAYER_SAES],
        "paired": [f"results/{run}/scores/{s}.paired.parquet" for s in LAYER_SAES],
        "maxacts": [f"results/{run}/maxacts/{s}.parquet" for s in LAYER_SAES],
    }
    if PARAPHRASE:
        files["para"] = [f"results/{run}/maxacts/{s}.para.parquet" for s in LAYER_SAES]
    if LOGIT_LENS:
        files["enrichment"] = [
            f"results/{run}/logit_lens/{s}.enrichment.parquet" for s in LAYER_SAES
        ]
    return files


LAYER_SAES = layer_saes()
if LAYER_SAES:
    FIGURES.append(f"results/{RUN}/sweeps/layers.png")
if CAUSAL:
    FIGURES.extend(expand(f"results/{RUN}/causal/{{sae}}.png", sae=SAES))
if CAUSAL and config["causal"]["dictionary_sentences"]:
    FIGURES.extend(expand(f"results/{RUN}/causal/{{sae}}.dictionary.png", sae=SAES))
