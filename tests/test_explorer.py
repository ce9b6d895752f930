"""The all-features browser of the tiny DAG in headless Chromium: filters from the URL hash give
the counts a Python filter of the same table gives, a planted search word finds its feature, the
rows link to the right pages, and the script reports no error."""

from __future__ import annotations

import re

import polars as pl
import pytest
from html_dom import parse

from polyglot_sae.report.browser import dump_dom, file_url, find_chromium
from polyglot_sae.report.table import feature_table

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(find_chromium() is None, reason="needs Debian's chromium")]


def _view(folder, fragment=""):
    dom = dump_dom(file_url(folder / "explorer.html", fragment))
    assert 'data-render-ms="' in dom and "data-errors" not in dom, dom[:2000]
    count = int(re.search(r'id="status"[^>]*>([\d,]+) of', dom).group(1).replace(",", ""))
    rows = [tr for tr in parse(dom).iter("tr") if "data-id" in tr.attrs]
    return count, rows


@pytest.fixture(scope="module")
def browser(tiny_dag):
    res = tiny_dag[0] / "results" / "tiny"
    table = feature_table(res, "tiny-sae").filter(~pl.col("dead"))
    words = pl.read_parquet(res / "paired" / "tiny-sae.words.parquet")
    return res / "pages" / "tiny-sae", table, words


def test_every_alive_feature_has_a_page_and_a_row(browser):
    folder, table, _ = browser
    pages = {int(p.stem) for p in (folder / "features").glob("*.html")}
    assert pages == set(table["feature_id"].to_list())
    count, rows = _view(folder, "sort=rank")
    assert count == table.height
    first = rows[0]
    best = int(table.sort("rank", nulls_last=True)["feature_id"][0])
    assert int(first.attrs["data-id"]) == best
    link = first.find_tag("a")
    assert link.attrs["href"] == f"features/{best}.html"  # the row's click target
    page = (folder / link.attrs["href"]).read_text(encoding="utf-8")
    assert f"feature {best}" in page


def test_filters_match_python(browser):
    folder, table, words = browser
    shown = sorted(set(table["class"].to_list()))
    cls = shown[-1]
    count, rows = _view(folder, f"class={cls}")
    assert count == table.filter(pl.col("class") == cls).height
    assert all(list(r.iter("td"))[1].text() == cls for r in rows)
    count, _ = _view(folder, "min.rho=0.1&max.r_word=0.6")
    assert count == table.filter((pl.col("rho") >= 0.1) & (pl.col("r_word") <= 0.6)).height
    # the whole dictionary's ablation, every alive feature's
    cut = round(float(table["ablation_kl_en"].median()), 4)  # the browser's values: 4 decimals
    count, _ = _view(folder, f"min.ablation_kl_en={cut}")
    assert 0 < count == table.filter(pl.col("ablation_kl_en").round(4) >= cut).height


def test_search_finds_a_planted_word(browser):
    folder, table, words = browser
    top3 = (words.sort("feature_id", "lang", "word_rank")
            .group_by("feature_id", "lang", maintain_order=True).head(3))
    # a word few features have among their top words: the search must find exactly those
    counts = top3.group_by("word").agg(pl.col("feature_id").n_unique()).sort("feature_id", "word")
    word = counts.filter(~pl.col("word").str.contains(r"[\d\s]"))["word"][0]  # never an id
    expect = {f for f, w in top3.select("feature_id", "word").iter_rows()
              if word.lower() in w.lower()} & set(table["feature_id"].to_list())
    count, rows = _view(folder, f"q={word}")
    assert count == len(expect) and {int(r.attrs["data-id"]) for r in rows} == expect


def test_hostile_words_stay_text(tmp_path):
    """Words from a corpus are data: a word that is HTML renders as text, nothing runs."""
    from polyglot_sae.bench.explorer_bench import synthetic_table
    from polyglot_sae.report.explorer import explorer_data, write_explorer

    table, words = synthetic_table(50)
    evil = '<img src=x onerror="document.title=1">'
    words = words.with_columns(word=pl.when(pl.col("feature_id") == 7).then(pl.lit(evil))
                               .otherwise(pl.col("word")))
    write_explorer(explorer_data(table, words, ["en", "es"], set()), tmp_path, "t",
                   "<b>name</b>")
    count, rows = _view(tmp_path, "q=onerror")
    assert count == 1 and int(rows[0].attrs["data-id"]) == 7
    dom = dump_dom(file_url(tmp_path / "explorer.html", "q=onerror"))
    assert "<img" not in dom and "&lt;img src=x" in dom and "<b>name</b>" not in dom
