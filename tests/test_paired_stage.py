"""The paired method through its files and the CLI, as the pipeline and users call it: the
columns, rho against numpy, the paraphrase read from its own table, and the clear errors."""

import numpy as np
import polars as pl
import pytest

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.cli import main
from polyglot_sae.paired.classes import ClassConfig
from polyglot_sae.paired.stage import classify_file, paired_stats_file
from polyglot_sae.paired.stats import PairedConfig

N, D = 120, 6
MAX = {"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32, "value": pl.Float32,
       "token_id": pl.UInt32}


def _dense(rng):
    """q[lang][pair, feature]: feature 0 a concept (correlated, co-firing often), 1 a name
    (same token both sides), 2 en-only, 3 independent, 4 one pair, 5 never."""
    base = rng.lognormal(size=N) * (rng.random(N) < 0.4)
    q = {lang: np.zeros((N, D), dtype=np.float32) for lang in ("en", "es", "en_para")}
    for lang in q:
        q[lang][:, 0] = base * rng.uniform(0.7, 1.3, N)
    name = (rng.random(N) < 0.3) * rng.uniform(1, 2, N)
    for lang in q:
        q[lang][:, 1] = name
        q[lang][:, 3] = (rng.random(N) < 0.3) * rng.uniform(0.5, 1, N)
    q["en"][:, 2] = q["en_para"][:, 2] = (rng.random(N) < 0.5) * 1.0
    q["en"][7, 4] = q["es"][7, 4] = 1.0
    return q


def _write(tmp_path, q):
    tokens = {"en": [10, 20, 30, 40, 50, 60], "es": [11, 20, 31, 41, 51, 61],
              "en_para": [10, 20, 30, 40, 50, 60]}
    paths = {}
    for group, langs in (("main", ("en", "es")), ("para", ("en_para",))):
        rows = [(k, lang, f, float(q[lang][k, f]), tokens[lang][f])
                for lang in langs for k in range(N) for f in range(D) if q[lang][k, f] > 0]
        table = pl.DataFrame(rows, schema=MAX, orient="row")
        lengths = pl.DataFrame({"pair_id": np.tile(np.arange(N), len(langs)),
                                "lang": np.repeat(langs, N), "n_tokens": 20 + np.arange(N * len(langs)) % 7},
                               schema={"pair_id": pl.UInt32, "lang": pl.String, "n_tokens": pl.UInt32})
        meta = {"n_pairs": N, "d_sae": D, "langs": list(langs)}
        paths[group] = write_parquet(table, tmp_path / f"{group}.parquet", meta)
        paths[f"{group}_lengths"] = write_parquet(lengths, tmp_path / f"{group}.lengths.parquet", meta)
    vocab = pl.DataFrame({"token_id": sorted({t for ts in tokens.values() for t in ts})},
                         schema={"token_id": pl.UInt32})
    vocab = vocab.with_columns(token_str=pl.format("▁w{}", pl.col("token_id")))
    paths["vocab"] = write_parquet(vocab, tmp_path / "vocab.parquet")
    return paths


def test_files_give_numpy_rho_and_the_classes(tmp_path):
    q = _dense(np.random.default_rng(0))
    paths = _write(tmp_path, q)
    stats = paired_stats_file(paths["main"], tmp_path / "stats.parquet", langs=["en", "es"],
                              config=PairedConfig(bootstrap=50), lengths_path=paths["main_lengths"],
                              vocab_path=paths["vocab"],
                              paraphrase=("en", paths["para"], paths["para_lengths"]))
    for f in (0, 1, 3):
        assert stats["rho"][f] == pytest.approx(np.corrcoef(q["en"][:, f], q["es"][:, f])[0, 1], abs=1e-9)
        assert stats["rho_para"][f] == pytest.approx(
            np.corrcoef(q["en"][:, f], q["en_para"][:, f])[0, 1], abs=1e-9)
    assert read_metadata(tmp_path / "stats.parquet")["paraphrase"] == ["en", "en_para"]
    scores = classify_file(tmp_path / "stats.parquet", tmp_path / "scores.parquet",
                           langs=["en", "es"], classes=ClassConfig())
    assert {"feature_id", "dead", "rank", "class", "rho", "rho_lo", "lex", "ratio"} <= set(scores.columns)
    cls = scores["class"].to_list()
    assert cls[0] == "concept" and cls[1] == "shared_string" and cls[2] == "lang_specific:en"
    assert cls[4] == "low_support" and cls[5] == "dead" and scores["rank"][0] == 0
    assert scores["rank"][4] is None and scores["rank"][5] is None


def test_cli_scores_paired_like_the_rules(tmp_path, capsys):
    q = _dense(np.random.default_rng(1))
    paths = _write(tmp_path, q)
    out = tmp_path / "cli.parquet"
    rc = main(["score", str(paths["main"]), "--d-sae", str(D), "--langs", "en,es", "--method",
               "paired", "--lengths", str(paths["main_lengths"]), "--vocab", str(paths["vocab"]),
               "--paraphrase", str(paths["para"]), "--paraphrase-of", "en",
               "--paraphrase-lengths", str(paths["para_lengths"]), "--bootstrap", "50",
               "--out", str(out)])
    assert rc == 0 and "method paired" in capsys.readouterr().out
    paired_stats_file(paths["main"], tmp_path / "s.parquet", langs=["en", "es"],
                      config=PairedConfig(bootstrap=50), lengths_path=paths["main_lengths"],
                      vocab_path=paths["vocab"],
                      paraphrase=("en", paths["para"], paths["para_lengths"]))
    rules = classify_file(tmp_path / "s.parquet", tmp_path / "r.parquet", langs=["en", "es"],
                          classes=ClassConfig())
    assert pl.read_parquet(out).equals(rules)


def test_a_paraphrase_of_no_scored_pair_is_refused(tmp_path):
    q = _dense(np.random.default_rng(2))
    paths = _write(tmp_path, q)
    stray = pl.read_parquet(paths["para"]).with_columns(pl.col("pair_id") + 10_000)
    write_parquet(stray, tmp_path / "stray.parquet", {"langs": ["en_para"]})
    with pytest.raises(Exception, match="pair"):
        paired_stats_file(paths["main"], tmp_path / "x.parquet", langs=["en", "es"],
                          config=PairedConfig(bootstrap=50), paraphrase=("en", tmp_path / "stray.parquet", None))
    assert not (tmp_path / "x.parquet").exists()
