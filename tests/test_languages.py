"""Languages come from the config everywhere: the whole default DAG on a tiny three-language
corpus and on an English-French one (no Spanish, no dictionary)."""

import polars as pl
import pytest
from conftest import run_snakemake, write_config
from test_workflow import tiny_config

pytestmark = pytest.mark.integration

FRENCH = ["Dieu", "eau", "roi", "maison", "lumière", "pain", "ville", "rivière"]


# Each runs a whole DAG: the two may run side by side (conftest.SPLIT_FILES).
@pytest.mark.parametrize("langs", [("en", "es", "fr"), ("en", "fr")], ids=["three", "en-fr"])
def test_other_languages_run_the_whole_dag(tmp_path, langs):
    """Languages come from the config everywhere: three languages, and a pair without Spanish,
    run the default DAG (lighter settings: one shard, one ladder width, fewer
    permutations, no screenshots or causal check; the pair without Spanish without the MCS
    ladder and the logit lens, which the three-language DAG runs for French)."""
    workdir = tmp_path / "dag"
    workdir.mkdir()
    config = tiny_config(workdir, shard_pairs=30)  # one shard: sharding is tested elsewhere
    fr = workdir / "corpus.fr.txt"
    fr.write_text("".join(f"Le {FRENCH[i % 8]} et la {FRENCH[(3 * i + 1) % 8]} furent vus le "
                          f"jour {i}.\n" for i in range(48)))
    files = {**config["corpus"]["files"], "fr": str(fr)}
    config["corpus"].update(langs=list(langs), files={lang: files[lang] for lang in langs})
    # seed is the published code's two-language arithmetic, exact its generalisation to any
    # number: one of them beside paired runs every stage a method has
    bi_method = "seed" if len(langs) == 2 else "exact"
    config["score"].update(methods=["paired", bi_method], permutations=19)
    config["sweeps"].update(ablation_sizes=[10], bootstrap=2, ablation_permutations=9)
    config["mcs"].update(widths=[96])
    config["logit_lens"].update(null_directions=8)
    # the tiny DAG covers the screenshots and the causal check; here they would only add jobs
    config.update(pages={**config["pages"], "screenshots": False}, causal={"enabled": False})
    if "es" not in langs:  # the three-language DAG covers the ladder and the lens per language
        config["mcs"].update(widths=[])
        config["logit_lens"] = {"enabled": False}
    write_config(workdir, config)
    run_snakemake(workdir, "--cores", "2", timeout=2400)
    res = workdir / "results" / "tiny"
    paired = pl.read_parquet(res / "scores" / "tiny-sae.paired.parquet")
    assert {f"n_fire_{lang}" for lang in langs} <= set(paired.columns)
    # every pair of languages aligned, the word level joined to the scores
    aligned = {p.stem for p in (workdir / "results" / "toy" / "align").glob("*.parquet")}
    assert aligned == {f"{a}-{b}" for i, a in enumerate(langs) for b in langs[i + 1:]}
    assert {"r_word", "r_word_lo", "align_lift"} <= set(paired.columns)
    if "es" in langs:
        crosstab = pl.read_parquet(res / "logit_lens" / f"tiny-sae.{bi_method}.crosstab.parquet")
        assert set(crosstab["promotes"].cast(pl.String)) == {*langs, "several", "neither"}
    lexicon = pl.read_parquet(res / "lexicon" / "tiny-sae.parquet")
    # en-es has a dictionary installed (install.sh); a pair without one is a stated skip
    assert ("en-es" in set(lexicon["langs"])) == ("es" in langs)
    assert lexicon.filter(pl.col("langs").str.contains("fr"))["note"].str.starts_with("skipped").all()
    summary = (res / "summary.md").read_text()
    assert all(f"{lang}-specific" in summary for lang in langs)
    assert (res / "pages" / "tiny-sae.paired" / "index.html").exists()
