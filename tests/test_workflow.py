"""The whole DAG through Snakemake on a tiny random model, a small corpus and a tiny SAE."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import (expected_beta_sweep, make_jumprelu, run_snakemake, sample_corpus,
                      write_config)
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.integration


def tiny_config(workdir, shard_pairs=10, **overrides):
    texts = sample_corpus(48)
    files = {}
    for lang, lines in texts.items():
        (workdir / f"corpus.{lang}.txt").write_text("\n".join(lines) + "\n")
        files[lang] = str(workdir / f"corpus.{lang}.txt")
    # The paraphrase ceiling: English reworded, aligned by line.
    (workdir / "corpus.en_para.txt").write_text("".join(
        f"On day {i}, {line.split(' were ')[0].lower()} could be seen.\n"
        for i, line in enumerate(texts["en"])))
    config = {
        "run": "tiny",
        "corpus": {"name": "toy", "source": "files", "langs": ["en", "es"], "files": files,
                   "paraphrase": {"lang": "en", "source": "files",
                                  "file": str(workdir / "corpus.en_para.txt")}},
        "split": {"seed": 0, "train_pairs": 16, "score_pairs": 30,
                  "shard_pairs": shard_pairs},
        # Gemma-3's architecture at toy size: the default lean forward runs inside Snakemake
        "model": {"name": "tiny", "source": "tiny",
                  "tiny": {"seed": 1, "like": "google/gemma-3-270m"}},
        "extract": {"batch_size": 8, "max_tokens": 96},
        "saes": [{"id": "tiny-sae", "hook": "blocks.1.hook_resid_post", "source": "train",
                  "train": {"d_sae": 48, "epochs": 2.0, "batch_size": 128}}],
        "score": {"methods": ["exact", "seed", "paired"], "beta_rank": 5, "permutations": 99},
        "paired": {"bootstrap": 50, "classes": {"min_cofire": 3}},
        "sweeps": {"beta_ranks": [1, 5, 20], "top_k": 4, "ablation_sizes": [10, 20],
                   "bootstrap": 3, "ablation_permutations": 49},
        "report": {"top_k": 4, "n_examples": 2, "eval_pairs": 6},
        "mcs": {"widths": [24, 96], "seeds": [1], "random_seeds": [0, 1]},
        "pages": {"top_n": 5, "n_examples": 2, "top_significant": 2},
        "logit_lens": {"min_count": 2, "min_share": 0.6, "null_directions": 32},
    }
    config.update(overrides)
    return config


def planned_jobs(workdir, *targets: str) -> dict[str, int]:
    """Jobs Snakemake would run now (for `targets`, else the default target), from its own
    dry-run job table."""
    proc = run_snakemake(workdir, "-n", "--cores", "1", *targets)
    out = proc.stdout
    if "Job stats:" not in out:
        # No job table must mean Snakemake said so, not that its output changed format.
        assert "Nothing to be done" in proc.stdout + proc.stderr, (out[-3000:], proc.stderr[-3000:])
        return {}
    table = out.split("Job stats:")[1].split("Reasons:")[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert jobs.pop("total", None) == sum(jobs.values()) and jobs, table  # the table was read
    return jobs


def _top(scores: pl.DataFrame, k: int) -> set[int]:
    return set(scores.filter(pl.col("rank") < k)["feature_id"].to_list())


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def check_beta_sweep(res, method, beta_ranks=(1, 5, 20), top_k=4, beta_rank=5):
    """The beta sweep table against one computed from the score rule's table alone (conftest's
    expected_beta_sweep). On the tiny DAG every alive feature fires in every sentence, so idaf
    is constant and every beta ranks alike: this checks the wiring (method, ranks, top-k);
    test_scoring checks the sweep itself on varied data."""
    scores = pl.read_parquet(res / "tiny" / "scores" / f"tiny-sae.{method}.parquet")
    expected = expected_beta_sweep(scores, beta_ranks, top_k)
    sweep = pl.read_parquet(res / "tiny" / "sweeps" / f"tiny-sae.{method}.beta.parquet")
    assert_frame_equal(sweep, expected, abs_tol=1e-9)
    # The score table's beta is the formula's at the configured rank.
    assert scores["beta"].unique().to_list() == pytest.approx(
        expected.filter(pl.col("beta_rank") == beta_rank)["beta"].to_list(), abs=1e-12)


def check_size_ablation(res, method, sizes=(10, 20), subsets=3, top_k=4, permutations=49,
                        seed=0, beta_rank=5, early_stop_hits=10):
    """The dataset-size ablation recomputed here: nested prefixes of the scored pairs in their
    seeded order (the full set last), each scored with its own permutation null, the top-k
    compared with the score rule's table (all pairs); intervals from min to max over random
    subsets of distinct pairs of all the scored pairs (one seeded stream through the sizes),
    and at the full size, where every subset is the full set, the point itself."""
    from polyglot_sae.corpus.pairs import seeded_order
    from polyglot_sae.score.null import NullConfig, score_with_null
    from polyglot_sae.score.bilingual import ScoreConfig

    maxacts = pl.read_parquet(res / "tiny" / "maxacts" / "tiny-sae.parquet")
    split = pl.read_parquet(res / "toy" / "split" / "score.parquet")
    order = seeded_order(np.unique(split["pair_id"].to_numpy()), seed)
    reference = _top(pl.read_parquet(res / "tiny" / "scores" / f"tiny-sae.{method}.parquet"), top_k)

    def measure(ids):  # the pairs renumbered 0.. in the given order
        renumbered = pl.DataFrame({"pair_id": ids.astype(np.uint32),
                                   "new": np.arange(len(ids), dtype=np.uint32)})
        rows = (renumbered.join(maxacts, on="pair_id")
                .select(pl.col("new").alias("pair_id"), "lang", "feature_id", "value")
                .sort("pair_id", "lang", "feature_id"))
        scores = score_with_null(rows, n_pairs=len(ids), d_sae=48, langs=["en", "es"],
                                 score_config=ScoreConfig(method=method, beta_rank=beta_rank),
                                 null_config=NullConfig(permutations=permutations, seed=seed,
                                                        early_stop_hits=early_stop_hits))
        return int((scores["q_value"] < 0.05).sum()), _jaccard(_top(scores, top_k), reference)

    rng = np.random.default_rng(seed)
    rows = []
    for size in (*sizes, len(order)):
        point = np.array(measure(order[:size]), dtype=float)
        if size < len(order):
            subs = np.array([measure(rng.choice(order, size=size, replace=False))
                             for _ in range(subsets)])
            lo, hi = subs.min(axis=0), subs.max(axis=0)
        else:
            lo = hi = point
        rows.append({"n_pairs": size, "n_found": int(point[0]), "n_found_lo": lo[0],
                     "n_found_hi": hi[0], "topk_overlap": point[1],
                     "topk_overlap_lo": lo[1], "topk_overlap_hi": hi[1]})
    table = pl.read_parquet(res / "tiny" / "sweeps" / f"tiny-sae.{method}.size.parquet")
    assert table["n_pairs"].to_list() == [10, 20, 30]
    assert_frame_equal(table, pl.DataFrame(rows), check_dtypes=False, abs_tol=1e-9)
    # All pairs: the full ranking, with no spread; fewer pairs rank differently.
    full = table.row(-1, named=True)
    assert full["n_found_lo"] == full["n_found"] == full["n_found_hi"]
    assert full["topk_overlap_lo"] == full["topk_overlap"] == full["topk_overlap_hi"] == 1.0
    return table


def _dense(table: pl.DataFrame, lang: str, ids: list[int], d_sae: int) -> np.ndarray:
    """q[pair, feature] of one language, zeros where the table has no row."""
    slot = {p: i for i, p in enumerate(ids)}
    q = np.zeros((len(ids), d_sae))
    for p, f, v in table.filter(pl.col("lang") == lang).select("pair_id", "feature_id",
                                                              "value").iter_rows():
        q[slot[p], f] = v
    return q


def check_paired(res):
    """The paired method on the tiny DAG: rho and rho_para against numpy on the dense maxima,
    the classes and rank, the paraphrase alignment, the lexicon check and the summary."""
    scores = pl.read_parquet(res / "tiny" / "scores" / "tiny-sae.paired.parquet")
    assert scores.height == 48 and {"rho", "rho_lo", "ratio", "lex", "class"} <= set(scores.columns)
    ids = sorted(pl.read_parquet(res / "toy" / "split" / "score.parquet")["pair_id"].unique())
    maxacts = pl.read_parquet(res / "tiny" / "maxacts" / "tiny-sae.parquet")
    para = pl.read_parquet(res / "tiny" / "maxacts" / "tiny-sae.para.parquet")
    en, es = (_dense(maxacts, lang, ids, 48) for lang in ("en", "es"))
    en_para = _dense(para, "en_para", ids, 48)
    checked = 0
    for f in range(48):
        if en[:, f].std() > 0 and es[:, f].std() > 0 and en_para[:, f].std() > 0:
            assert scores["rho"][f] == pytest.approx(np.corrcoef(en[:, f], es[:, f])[0, 1], abs=1e-9)
            assert scores["rho_para"][f] == pytest.approx(
                np.corrcoef(en[:, f], en_para[:, f])[0, 1], abs=1e-9)
            checked += 1
    assert checked > 4
    ranked = scores.filter(pl.col("rank").is_not_null()).sort("rank")
    assert ranked["rank"].to_list() == list(range(ranked.height))
    concept = ranked["class"] == "concept"
    assert not (concept.cast(pl.Int8).diff().drop_nulls() > 0).any()  # concept features first
    stats = json.loads((res / "toy" / "paraphrase_stats.json").read_text())
    assert stats["matched"] == 48 and stats["missing_in_paraphrase"] == 0
    lexicon = pl.read_parquet(res / "tiny" / "lexicon" / "tiny-sae.parquet")
    methods = set(lexicon["method"].drop_nulls())
    assert {m for m in methods if not m.startswith("class:")} == {
        "exact", "seed", "paired", "plain_rho", "paired_verse"}
    classes = set(scores.filter(pl.col("rank").is_not_null())["class"])
    assert {m.removeprefix("class:") for m in methods if m.startswith("class:")} == classes
    # the word level: one link table for the corpus, its columns joined to the paired scores
    links = pl.read_parquet(res / "toy" / "align" / "en-es.parquet")
    assert links.height > 48 and links["pair_id"].n_unique() > 30
    assert {"r_word", "r_word_lo", "align_lift", "lex_word", "n_cofire_word",
            "rank_verse"} <= set(scores.columns)
    summary = (res / "tiny" / "summary.md").read_text().splitlines()
    assert "concept-bilingual features with word-level evidence of" in summary[2]
    assert any(line.startswith("Paraphrase ceiling:") for line in summary)


def test_full_dag_outputs(tiny_dag):
    workdir, stdout = tiny_dag
    res = workdir / "results"
    pairs = pl.read_parquet(res / "toy" / "pairs.parquet")
    assert pairs.schema == {"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String}
    assert pairs.height == 96
    acts = pl.read_parquet(res / "tiny" / "acts" / "tiny-sae" / "00000.parquet")
    assert acts.schema == {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
                           "feature_id": pl.UInt32, "value": pl.Float32}
    assert (acts["value"] > 0).all() and (acts["token_pos"] > 0).all()
    maxacts = pl.read_parquet(res / "tiny" / "maxacts" / "tiny-sae.parquet")
    assert maxacts.schema == {"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32,
                              "value": pl.Float32, "token_id": pl.UInt32}
    score_ids = set(pl.read_parquet(res / "toy" / "split" / "score.parquet")["pair_id"].to_list())
    train_ids = set(pl.read_parquet(res / "toy" / "split" / "train.parquet")["pair_id"].to_list())
    assert set(maxacts["pair_id"].to_list()) <= score_ids and not score_ids & train_ids
    for method in ("exact", "seed"):
        scores = pl.read_parquet(res / "tiny" / "scores" / f"tiny-sae.{method}.parquet")
        assert scores.schema == {"feature_id": pl.UInt32, "jsd": pl.Float64, "idaf": pl.Float64,
                                 "beta": pl.Float64, "bi_score": pl.Float64, "dead": pl.Boolean,
                                 "rank": pl.UInt32, "p_value": pl.Float64, "q_value": pl.Float64}
        assert scores.height == 48
        alive = scores.filter(~pl.col("dead")).sort("rank")
        assert alive["rank"].to_list() == list(range(alive.height)) and alive.height > 4
        assert alive["bi_score"].is_sorted()
        assert scores.filter(pl.col("dead"))["rank"].null_count() == scores["dead"].sum()
        p = alive["p_value"].to_numpy()
        assert ((p >= 1 / 100) & (p <= 1)).all() and (alive["q_value"].to_numpy() >= p).all()
        top = pl.read_parquet(res / "tiny" / "top_features" / f"tiny-sae.{method}.parquet")
        assert top["rank"].unique().sort().to_list() == [0, 1, 2, 3]
        assert top["marked"].str.contains("«").all()
    quality = json.loads((res / "tiny" / "sae_quality" / "tiny-sae.json").read_text())
    assert set(quality["per_language"]) == {"en", "es"}
    for q in quality["per_language"].values():
        assert 0 < q["l0"] < 48 and q["fve"] < 1 and q["tokens"] > 0
    for png in ("figures/tiny-sae.activation_share.png", "figures/tiny-sae.exact.bi_curve.png",
                "sweeps/tiny-sae.seed.beta.png", "sweeps/tiny-sae.exact.size.png",
                "figures/tiny-sae.seed.pvalues.png", "mcs/tiny-sae.histogram.png",
                "mcs/tiny-sae.widths.png", "mcs/tiny-sae.seed.scatter.png",
                "pages/tiny-sae.exact.index.png", "pages/tiny-sae.seed.top_feature.png",
                "logit_lens/tiny-sae.classes.png", "logit_lens/tiny-sae.histogram.png",
                "logit_lens/tiny-sae.exact.languages.png", "paired/tiny-sae.ceiling.png",
                "sweeps/tiny-sae.paired.size.png", "pages/tiny-sae.paired.index.png"):
        assert (res / "tiny" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for method in ("exact", "seed"):
        check_beta_sweep(res, method)
    # fewer pairs rank differently (for one method at least: the tiny DAG is small)
    assert min(check_size_ablation(res, m)["topk_overlap"].min() for m in ("exact", "seed")) < 1
    check_paired(res)
    causal = pl.read_parquet(res / "tiny" / "causal" / "tiny-sae.parquet")
    tested = causal.filter(~pl.col("is_control"))
    assert tested.height >= 4 and set(tested["verdict"]) <= {"both", "one:en", "one:es",
                                                            "neither", "untested"}
    assert (res / "tiny" / "causal" / "tiny-sae.png").exists()
    assert (res / "tiny" / "causal" / "tiny-sae.dictionary.png").exists()
    summary = (res / "tiny" / "summary.md").read_text()
    assert "Causal check: " in summary and "; paired top 20 — " in summary
    assert "Whole dictionary (exact ablation" in summary
    saes = pl.read_parquet(res / "tiny" / "sweeps" / "saes.parquet")
    assert saes.select("sae", "method", "layer").rows() == [("tiny-sae", "exact", 1), ("tiny-sae", "seed", 1)]
    ladder = pl.read_parquet(res / "tiny" / "mcs" / "tiny-sae.ladder.parquet")
    assert ladder.select("name", "width").rows() == [("w24-s1", 24), ("tiny-sae", 48)]
    assert (ladder["reference"] == "w96-s1").all() and (ladder["n_high"] + ladder["n_low"]
                                                       == ladder["width"]).all()
    mcs = pl.read_parquet(res / "tiny" / "mcs" / "tiny-sae.features.parquet")
    assert mcs.height == 48 and mcs["mcs"].is_between(-1.0001, 1.0001).all()
    test = json.loads((res / "tiny" / "mcs" / "tiny-sae.exact.bilingual.json").read_text())
    assert test["sig_high"] + test["sig_low"] == int((pl.read_parquet(
        res / "tiny" / "scores" / "tiny-sae.exact.parquet")["q_value"] < 0.05).sum())
    stats = pl.read_parquet(res / "tiny" / "logit_lens" / "tiny-sae.stats.parquet")
    assert stats.height == 48 and stats["top_tokens"].list.len().min() > 0
    enrichment = pl.read_parquet(res / "tiny" / "logit_lens" / "tiny-sae.enrichment.parquet")
    assert {"lang_es", "lang_en"} <= set(enrichment["set_name"].to_list())
    crosstab = pl.read_parquet(res / "tiny" / "logit_lens" / "tiny-sae.exact.crosstab.parquet")
    exact = pl.read_parquet(res / "tiny" / "scores" / "tiny-sae.exact.parquet")
    assert crosstab["n_features"].sum() == (~exact["dead"]).sum()
    pages = res / "tiny" / "pages" / "tiny-sae.exact"
    feature_pages = sorted((pages / "features").glob("*.html"))
    significant = exact.filter(pl.col("q_value") < 0.05).sort("rank").head(2)["feature_id"]
    expected = set(exact.filter(pl.col("rank") < 5)["feature_id"]) | set(significant)
    assert {int(p.stem) for p in feature_pages} == expected
    assert (pages / "index.html").stat().st_size > 0
    assert all("Max cosine similarity to other dictionaries" in p.read_text() for p in feature_pages)
    assert all("logit" in p.read_text().lower() for p in feature_pages)
    nu = json.loads((res / "tiny" / "monolinguality" / "tiny-sae.exact.json").read_text())
    assert -1 <= nu["rho"] <= 1 and nu["n_features"] > 4
    summary = (res / "tiny" / "summary.md").read_text()
    assert "Top 4 features: tiny-sae, method exact" in summary and summary in stdout
    assert (workdir / "logs" / "tiny" / "extract" / "tiny-sae" / "00000.log").read_text()
    assert planned_jobs(workdir) == {}  # nothing left to do


def _copy(tiny_dag, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_dag[0], workdir, symlinks=True)
    return workdir


def _edit_config(workdir, edit):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    edit(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


# What each config change reruns: the README's table, row by row. Sets of rules; "all" aside.
# The paired method: statistics (bootstrap), then classes, then what reads its scores.
# The causal check reads every method's scores; the pages and the summary read it.
READS_CAUSAL = {"causal", "causal_figure", "causal_dictionary", "feature_pages",
                "page_screenshots", "explorer", "summary"}
READS_PAIRED = {"paired_classes", "paired_size_ablation", "sweep_plot", "top_features",
                "paired_figure", "word_figure", "lexicon_check"} | READS_CAUSAL
READS_SCORES = {"score", "top_features", "bi_curve", "pvalue_histogram", "monolinguality",
                "mcs_bilingual", "logit_lens_bilingual", "sae_sweep", "lexicon_check"} | READS_CAUSAL
READS_ACTS = READS_SCORES | READS_PAIRED | {
    "reduce", "activation_share", "beta_sweep", "size_ablation", "sweep_plot", "logit_lens",
    "paired_stats", "feature_words", "word_stats"}
READS_SAE = READS_ACTS | {"build_sae", "train_ladder_sae", "evaluate_sae", "extract", "mcs",
                          "extract_paraphrase", "reduce_paraphrase"}
CONFIG_RERUNS = [
    ("score.beta_rank", {"score": {"beta_rank": 7}},
     READS_SCORES | {"beta_sweep", "size_ablation", "sweep_plot"}),
    ("score.permutations", {"score": {"permutations": 49}}, READS_SCORES),
    ("sweeps.beta_ranks", {"sweeps": {"beta_ranks": [2, 4]}}, {"beta_sweep", "sweep_plot"}),
    ("sweeps.ablation_sizes", {"sweeps": {"ablation_sizes": [5, 15], "bootstrap": 2}},
     {"size_ablation", "paired_size_ablation", "sweep_plot"}),
    ("sweeps.top_k", {"sweeps": {"top_k": 3}},
     {"beta_sweep", "size_ablation", "paired_size_ablation", "sweep_plot"}),
    ("mcs.widths", {"mcs": {"widths": [24, 48]}},
     {"train_ladder_sae", "mcs", "mcs_bilingual", "feature_pages", "page_screenshots",
      "explorer"}),
    ("logit_lens.null_directions", {"logit_lens": {"null_directions": 16}},
     {"logit_lens", "logit_lens_bilingual", "feature_pages", "page_screenshots", "explorer"}),
    ("pages.top_n", {"pages": {"top_n": 4}}, {"feature_pages", "page_screenshots", "explorer"}),
    ("report.top_k", {"report": {"top_k": 3}}, {"top_features", "paired_figure", "summary"}),
    # A class threshold reruns the classification and what reads it, not the bootstrap.
    ("paired.classes", {"paired": {"classes": {"min_cofire": 4}}}, READS_PAIRED),
    ("paired.bootstrap", {"paired": {"bootstrap": 40}},
     READS_PAIRED | {"paired_stats", "word_stats"}),
    # The aligner's settings rerun the alignment and the word-level statistics, nothing else.
    # (not the dataset-size sweep: it stays at the verse level)
    ("align", {"align": {"n_samplers": 2}},
     READS_PAIRED - {"paired_size_ablation", "sweep_plot"} | {"align", "word_stats"}),
    ("causal.window", {"causal": {"window": 4}}, READS_CAUSAL),
    ("lexicon.top_words", {"lexicon": {"top_words": 2}},
     {"feature_words", "lexicon_check", "paired_figure", "explorer", "summary"}),
    # Extraction jobs are planned after the `shards` checkpoint, so a dry run cannot list them.
    ("split.shard_pairs", {"split": {"shard_pairs": 30}},
     READS_ACTS | {"shards", "reduce_paraphrase"}),
    ("split.score_pairs", {"split": {"score_pairs": 25}},
     READS_ACTS | {"split", "shards", "evaluate_sae", "reduce_paraphrase"}),
    ("saes[].train", {"saes": {"lr": 1.0e-3}}, READS_SAE),
    ("extract", {"extract": {"batch_size": 4}}, READS_SAE | {"cache_train_acts"}),
]


def _apply(config, edit):
    for section, values in edit.items():
        target = (config["saes"][0]["train"] if section == "saes"
                  else config.setdefault(section, {}))
        for key, value in values.items():
            if isinstance(value, dict):
                target.setdefault(key, {}).update(value)
            else:
                target[key] = value


@pytest.mark.parametrize("edit, rerun", [c[1:] for c in CONFIG_RERUNS],
                         ids=[c[0] for c in CONFIG_RERUNS])
def test_config_change_reruns_exactly_its_stages(tiny_dag, tmp_path, edit, rerun):
    workdir = _copy(tiny_dag, tmp_path)
    _edit_config(workdir, lambda c: _apply(c, edit))
    jobs = planned_jobs(workdir)
    assert jobs.pop("run_config") == 1  # the config beside the results follows every key
    assert set(jobs) - {"all"} == rerun
    if "mcs" in edit:
        assert jobs["train_ladder_sae"] == 1  # only the new width; the scored SAE is kept
    if "split" in edit:
        assert jobs.get("split", 0) <= 1  # the training pairs do not depend on the scored ones


def test_a_new_paraphrase_does_not_re_extract_the_scored_languages(tiny_dag, tmp_path):
    workdir = _copy(tiny_dag, tmp_path)
    para = workdir / "corpus.en_para.txt"
    lines = (Path(tiny_dag[0]) / "corpus.en_para.txt").read_text().splitlines()
    para.write_text("".join(f"Reworded: {line}\n" for line in lines))
    _edit_config(workdir, lambda c: c["corpus"]["paraphrase"].update(file=str(para)))
    jobs = planned_jobs(workdir)
    assert {"paraphrase", "extract_paraphrase", "reduce_paraphrase", "paired_stats"} <= set(jobs)
    assert not {"corpus", "split", "shards", "extract", "reduce", "score"} & set(jobs)


def test_grown_corpus_file_reruns_the_corpus(tiny_dag, tmp_path):
    workdir = _copy(tiny_dag, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for lang, path in config["corpus"]["files"].items():
        line = {"en": "One more line.", "es": "Una línea más."}[lang]
        (workdir / Path(path).name).write_text(Path(path).read_text() + line + "\n")
        config["corpus"]["files"][lang] = str(workdir / Path(path).name)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert {"corpus", "split", "shards"} <= set(planned_jobs(workdir))


def test_one_and_three_shards_give_identical_tables(tiny_dag, tmp_path):
    workdir = _copy(tiny_dag, tmp_path)
    res = workdir / "results" / "tiny"
    before = {p: pl.read_parquet(res / p) for p in
              ("maxacts/tiny-sae.parquet", "scores/tiny-sae.exact.parquet", "scores/tiny-sae.seed.parquet")}
    _edit_config(workdir, lambda c: c["split"].update(shard_pairs=30))
    jobs = planned_jobs(workdir)
    assert "build_sae" not in jobs and "cache_train_acts" not in jobs and jobs["shards"] == 1
    # only the tables compared: the analyses downstream of them are the same code either way
    run_snakemake(workdir, "--cores", "2", *(f"results/tiny/{p}" for p in before), timeout=1200)
    assert json.loads((workdir / "results" / "toy" / "shards.json").read_text())[
        "shards"]["00000"]["n_pairs"] == 30
    for path, table in before.items():
        assert pl.read_parquet(res / path).equals(table), path


def test_unknown_config_key_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    config["score"]["beta_rnak"] = 3
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "beta_rnak" in proc.stderr + proc.stdout


def test_bad_hook_and_wrong_width_fail_clearly_and_lose_nothing(tiny_dag, tmp_path):
    workdir = _copy(tiny_dag, tmp_path)
    wrong = make_jumprelu(40, 16)
    wrong.save_model(workdir / "wrong-width")

    def add_bad_saes(config):
        config["saes"] += [
            {"id": "bad-hook", "hook": "blocks.9.hook_resid_post", "source": "train",
             "train": {"d_sae": 16}},
            {"id": "bad-width", "hook": "blocks.1.hook_resid_post", "source": "disk",
             "path": str(workdir / "wrong-width")},
        ]

    _edit_config(workdir, add_bad_saes)
    res = workdir / "results"
    # the finished SAE's results, and the files that one pass writes for every SAE
    kept = [res / "tiny" / "maxacts" / "tiny-sae.parquet", *(res / "tiny" / "acts").rglob("*.parquet"),
            *(res / "toy" / "train_acts").rglob("*.safetensors")]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    # the two SAEs' own outputs (their jobs first check them against the model): one shard's
    # extraction is enough, the others fail alike
    proc = run_snakemake(workdir, "--cores", "2", "--keep-going", "results/tiny/maxacts/bad-hook.parquet",
                         "results/tiny/acts/bad-width/00000.parquet",
                         "results/tiny/sae_quality/bad-width.json", check=False, timeout=1200)
    assert proc.returncode != 0
    logs = {p: p.read_text() for p in (workdir / "logs").rglob("*.log")}  # names repeat
    hook_log = next(t for t in logs.values() if "no hook named 'blocks.9.hook_resid_post'" in t)
    # Which entry, what and which hooks exist (the tiny model has 2 layers), then what to do.
    assert ("config saes[bad-hook]: hook: the model has no hook named "
            "'blocks.9.hook_resid_post' (2 layers; e.g. ['blocks.0.hook_resid_post', "
            "'blocks.1.hook_resid_post']). Fix: use a hook point of this model" in hook_log), hook_log
    assert any("saes[bad-width] (resources/saes/tiny/bad-width): d_in: the SAE reads vectors of "
               "width 40 but blocks.1.hook_resid_post has width 32" in t for t in logs.values())
    # Each failed in its own job; the jobs that share a pass with the finished SAE skipped them
    # (polyglot_sae.activations.shared) and touched none of its files.
    assert len(stamps) > 3 and {p: p.stat().st_mtime_ns for p in kept} == stamps
    assert not list(res.rglob(".*.tmp"))  # no partial files


def test_seed_preset_builds_its_dag(tmp_path):
    """The seed's setup (Gemma-2-2B, GemmaScope, OPUS Books) plans without touching the hub."""
    from conftest import ROOT

    shutil.copy(ROOT / "configs" / "seed-gemma2-opus-books.yaml", tmp_path / "config.yaml")
    jobs = planned_jobs(tmp_path)
    # Extraction jobs are planned once the `shards` checkpoint has cut the corpus.
    assert jobs["shards"] == 1 and "extract" not in jobs
    assert jobs["fetch_sae"] == 1 and jobs["score"] == 2
    # the hub stages (localrules, workflow/rules/hub.smk): the model and OPUS Books fetched
    assert jobs["fetch_model"] == jobs["fetch_corpus"] == 1 and "build_sae" not in jobs
    assert "cache_train_acts" not in jobs  # a pretrained SAE needs no training activations
