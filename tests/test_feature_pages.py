"""Feature pages: content against independent computations on a synthetic input, escaping of
hostile tokens, links, atomic writes; and in headless Chromium the rendered, sorted, filtered
index (skipped without Chromium, failing instead when CI is set)."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polyglot_sae.report.browser import BrowserConfig, dump_dom, file_url, find_chromium, screenshot
from polyglot_sae.errors import InputError
from polyglot_sae.report import pages as render
from polyglot_sae.report.page_data import (FeaturePagesConfig, FeaturePagesInput, LogitLens,
                                           McsMatch, collect_feature_data, neuronpedia_template,
                                           select_features)
from polyglot_sae.report.pages import build_feature_pages

from html_dom import Node, parse

needs_chromium = pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("CI"),
    reason="headless Chromium is not installed (Debian `chromium`; CI installs it)")

EVIL = "<script>alert(1)</script>"
# Hostile and awkward pieces: markup, an entity, both quotes, non-ASCII, SentencePiece spaces.
PIECES = {"en": ["▁The", "▁king", "▁" + EVIL, "▁&amp;", '▁"q', "▁it's", "▁water", "▁light"],
          "es": ["▁El", "▁rey", "▁año", "▁niño", "▁" + EVIL, "▁&amp;", '▁"q', "▁agua"]}
LANGS = ["en", "es"]


def synthetic_input(n_features: int = 6, n_pairs: int = 30, n_dead: int = 2, seed: int = 0,
                    n_tokens: int = 8, with_extras: bool = True) -> FeaturePagesInput:
    """A scores table, token tables and sparse activations in the pipeline's schemas. Every
    alive feature fires in both languages on random tokens; the dead ones fire in English only."""
    rng = np.random.default_rng(seed)
    d_sae = n_features + n_dead
    tok_rows, act_rows = [], []
    for p in range(n_pairs):
        for lang in LANGS:
            pieces = ["<bos>", *rng.choice(PIECES[lang], size=n_tokens - 1)]
            tok_rows += [(p, lang, pos, 100 + pos, s) for pos, s in enumerate(pieces)]
            for f in range(d_sae):
                if lang == "es" and f >= n_features:
                    continue
                fire = rng.random(n_tokens) < 0.15
                fire[0] = False  # BOS
                for pos in np.flatnonzero(fire):
                    act_rows.append((p, lang, int(pos), f, float(rng.gamma(2.0, 1.0 + f))))
    tokens = pl.DataFrame(tok_rows, schema={"pair_id": pl.UInt32, "lang": pl.String,
                                            "token_pos": pl.UInt16, "token_id": pl.UInt32,
                                            "token_str": pl.String}, orient="row")
    acts = pl.DataFrame(act_rows, schema={"pair_id": pl.UInt32, "lang": pl.String,
                                          "token_pos": pl.UInt16, "feature_id": pl.UInt32,
                                          "value": pl.Float32}, orient="row")
    jsd = rng.random(d_sae)
    alive = np.arange(d_sae) < n_features
    bi = np.where(alive, jsd + 0.01 * rng.random(d_sae), np.nan)
    order = np.argsort(np.where(alive, bi, np.inf), kind="stable")
    rank = np.full(d_sae, -1)
    rank[order[:n_features]] = np.arange(n_features)
    p_value = np.where(alive, rng.random(d_sae) ** 3, np.nan)
    scores = pl.DataFrame({
        "feature_id": np.arange(d_sae, dtype=np.uint32), "jsd": jsd, "idaf": rng.random(d_sae),
        "beta": np.full(d_sae, 0.01), "bi_score": bi, "dead": ~alive,
        "rank": pl.Series(np.where(alive, rank, 0), dtype=pl.UInt32),
        "p_value": p_value, "q_value": np.minimum(p_value * 2, 1.0),
    }).with_columns(pl.when(pl.col("dead")).then(None).otherwise(pl.col("rank")).alias("rank"),
                    pl.when(pl.col("dead")).then(None).otherwise(pl.col("p_value")).alias("p_value"),
                    pl.when(pl.col("dead")).then(None).otherwise(pl.col("q_value")).alias("q_value"))
    refs = pl.DataFrame({"pair_id": np.arange(n_pairs, dtype=np.uint32),
                         "ref": [f"Gen 1:{p + 1}" for p in range(n_pairs)]})
    extras = {}
    if with_extras:
        extras = dict(
            logit_lens={int(order[0]): LogitLens(
                top=[("▁rey", 2.5), ("▁" + EVIL, 1.25)], bottom=[("▁&amp;", -1.5)],
                token_class='Spanish "nouns" & <others>')},
            mcs={int(order[0]): [McsMatch("layer-20 <16k>", 0.91, match=123, baseline=0.31)]},
        )
    return FeaturePagesInput(scores=scores, acts=acts.lazy(), tokens=tokens, langs=LANGS, refs=refs,
                             name="run <test> & 'quotes'", **extras)


PAIRED_CLASSES = ["concept", "shared_string", "lang_specific:es", "weak", "low_support", "length"]


def paired_scores(scores: pl.DataFrame, seed: int = 1) -> pl.DataFrame:
    """The paired method's scores table for the same features, ranks and dead flags: class, rho
    and its companions in place of the BI columns; dead features get class "dead" and NaN rho."""
    rng = np.random.default_rng(seed)
    n, dead = scores.height, scores["dead"].to_numpy()
    rho = np.where(dead, np.nan, rng.uniform(-0.2, 0.9, n))
    return pl.DataFrame({
        "feature_id": scores["feature_id"], "dead": scores["dead"], "rank": scores["rank"],
        "class": ["dead" if d else PAIRED_CLASSES[i % len(PAIRED_CLASSES)] for i, d in enumerate(dead)],
        "rho": rho, "rho_lo": rho - 0.1, "rho_len": rho - 0.05, "rho_para": np.full(n, 0.95),
        "ratio": rho / 0.95, "lex": rng.random(n), "rho_nonlex": rho - 0.02,
        "n_cofire": pl.Series(rng.integers(0, 30, n), dtype=pl.UInt32),
    })
INPUTS = synthetic_input()
# The worst-ranked alive feature and a dead one are listed beyond the top 4.
LAST = INPUTS.scores.sort("rank", nulls_last=True)["feature_id"][5]
CONFIG = FeaturePagesConfig(top_n=4, features=(7, LAST), n_examples=3)
# Rank 0 has the logit-lens and MCS entries; rank 1 has none.
FIRST, SECOND = INPUTS.scores.sort("rank", nulls_last=True)["feature_id"][:2]


@pytest.fixture(scope="module")
def inputs() -> FeaturePagesInput:
    return INPUTS


@pytest.fixture(scope="module")
def site(inputs, tmp_path_factory) -> Path:
    return build_feature_pages(inputs, tmp_path_factory.mktemp("pages") / "site", CONFIG)


# --- unit tests on the written HTML -------------------------------------------------------------


def test_selection_order_and_files(site, inputs):
    ids = select_features(inputs.scores, CONFIG)
    ranks = dict(inputs.scores.select("feature_id", "rank").iter_rows())
    top = sorted((f for f, r in ranks.items() if r is not None and r < 4), key=ranks.get)
    assert ids == [*top, LAST, 7]  # listed ones after the top ones, dead ones last
    assert sorted(p.name for p in (site / "features").iterdir()) == sorted(f"{f}.html" for f in ids)
    assert (site / "assets" / "pages.css").is_file() and (site / "assets" / "pages.js").is_file()
    assert [p.name for p in site.parent.iterdir()] == ["site"]  # no temp folder left beside it


def test_hostile_strings_are_escaped(site):
    pages = {p: p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    for path, text in pages.items():
        assert EVIL not in text and "alert(1)</" not in text, path
        scripts = list(parse(text).iter("script"))
        if path.name == "index.html":
            assert [s.attrs.get("src") or s.attrs.get("type") for s in scripts] == \
                ["assets/pages.js", "application/json"]
        else:
            assert scripts == [], path
    page = pages[site / "features" / f"{FIRST}.html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;amp;" in page and "&quot;q" in page and "it&#x27;s" in page and "año" in page
    assert "Spanish &quot;nouns&quot; &amp; &lt;others&gt;" in page
    assert "layer-20 &lt;16k&gt;" in page
    assert "run &lt;test&gt; &amp; &#x27;quotes&#x27;" in page
    # The JSON block: nothing that could end the element, and it decodes to the raw tokens.
    index = pages[site / "index.html"]
    block = re.search(r'<script type="application/json" id="feature-data">(.*?)</script>', index, re.S)
    assert block and not re.search(r"[<>&]", block.group(1))
    data = json.loads(block.group(1))
    assert any(EVIL in tok for f in data["features"] for lang_tokens in f["t"] for tok in lang_tokens)


def test_csp_and_no_remote_urls(site, inputs, tmp_path):
    for path in site.rglob("*.html"):
        tree = parse(path.read_text(encoding="utf-8"))
        csp = [m.attrs["content"] for m in tree.iter("meta")
               if m.attrs.get("http-equiv") == "Content-Security-Policy"]
        assert csp == [render.CSP] and "default-src 'none'" in csp[0] and "http" not in csp[0]
        urls = [n.attrs.get(a) for n in tree.iter() for a in ("src", "href") if n.attrs.get(a)]
        assert not [u for u in urls if re.match(r"(?i)\s*(https?:)?//", u)], path
    # With a Neuronpedia template, each feature page has exactly that one absolute link.
    config = replace(CONFIG, neuronpedia_url=neuronpedia_template("gemma-2-2b", "20-gemmascope-res-16k"))
    out = build_feature_pages(inputs, tmp_path / "np", config)
    for path in (out / "features").iterdir():
        tree = parse(path.read_text(encoding="utf-8"))
        urls = [n.attrs[a] for n in tree.iter() for a in ("src", "href") if n.attrs.get(a)]
        remote = [u for u in urls if re.match(r"(?i)\s*(https?:)?//", u)]
        assert remote == [f"https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/{path.stem}"]
    assert "neuronpedia" not in (out / "index.html").read_text(encoding="utf-8")


def test_links_between_index_and_pages(site, inputs):
    index = parse((site / "index.html").read_text(encoding="utf-8"))
    linked = [a.attrs["href"] for a in index.iter("a")]  # the <noscript> list
    assert linked == [f"features/{f}.html" for f in select_features(inputs.scores, CONFIG)]
    assert [f["id"] for f in index_data(site)["features"]] == select_features(inputs.scores, CONFIG)
    for href in linked + [n.attrs["href"] for n in index.iter("link")]:
        assert (site / href).is_file(), href
    for page in (site / "features").iterdir():
        tree = parse(page.read_text(encoding="utf-8"))
        for n in tree.iter():
            for attr in ("href", "src"):
                if n.attrs.get(attr) and not n.attrs[attr].startswith("https://"):
                    assert (page.parent / n.attrs[attr]).resolve().is_file(), (page, n.attrs[attr])
        assert "../index.html" in [a.attrs.get("href") for a in tree.iter("a")]


def index_data(site: Path) -> dict:
    text = (site / "index.html").read_text(encoding="utf-8")
    return json.loads(parse(text).find_id("feature-data").text())


def test_numbers_match_independent_computation(site, inputs):
    acts = inputs.acts.collect()
    tokens = inputs.tokens.filter(pl.col("token_pos") > 0)
    data = {f["id"]: f for f in index_data(site)["features"]}
    scores = {r["feature_id"]: r for r in inputs.scores.iter_rows(named=True)}
    for fid, row in data.items():
        assert row["rank"] == scores[fid]["rank"]
        assert row["bi"] == (None if scores[fid]["dead"] else pytest.approx(scores[fid]["bi_score"]))
        for i, lang in enumerate(LANGS):
            firing = acts.filter((pl.col("feature_id") == fid) & (pl.col("lang") == lang))
            share = firing["pair_id"].n_unique() / tokens.filter(pl.col("lang") == lang)["pair_id"].n_unique()
            assert row["d"][i] == pytest.approx(share, rel=1e-5)

    # One feature's density counts, best pairs per language, shading relative to its overall max.
    feature = next(f for f in collect_feature_data(inputs, CONFIG) if f.feature_id == FIRST)
    mine = acts.filter(pl.col("feature_id") == FIRST)
    fmax = mine["value"].max()
    assert feature.max_value == pytest.approx(fmax)
    for lang in LANGS:
        in_lang = mine.filter(pl.col("lang") == lang)
        st = feature.stats[lang]
        assert st.tokens_firing == in_lang.height == st.histogram.sum()
        assert st.n_tokens == tokens.filter(pl.col("lang") == lang).height
        per_pair = in_lang.group_by("pair_id").agg(pl.col("value").max()).sort(
            ["value", "pair_id"], descending=[True, False])
        assert [e.pair_id for e in feature.examples[lang]] == per_pair["pair_id"].head(3).to_list()
        strongest = in_lang.sort(["value", "pair_id", "token_pos"], descending=[True, False, False]).join(
            tokens, on=["pair_id", "lang", "token_pos"], maintain_order="left")["token_str"].to_list()
        distinct = list(dict.fromkeys(s.replace("▁", " ").strip() for s in strongest))
        assert feature.top_tokens[lang] == distinct[:CONFIG.n_top_tokens]
        best = feature.examples[lang][0]
        assert set(best.tokens) == set(LANGS)  # both sentences of the pair
        assert max(v for _, v in best.tokens[lang]) == pytest.approx(per_pair["value"][0])
    page = (site / "features" / f"{FIRST}.html").read_text(encoding="utf-8")
    top = mine.sort("value", descending=True).row(0, named=True)
    assert f'style="--a:1.000" title="{top["value"]:.4g}"' in page
    tree = parse(page)
    assert [h.text() for h in tree.iter("h3") if h.attrs.get("id", "").startswith("top-")] == \
        ["Top pairs by en activation", "Top pairs by es activation"]
    stats = {tr.find_tag("th").text(): tr.find_tag("td").text() for tr in next(tree.iter("table")).iter("tr")}
    assert stats == {"rank": "0", "BI score": f"{scores[FIRST]['bi_score']:.4g}",
                     "JSD": f"{scores[FIRST]['jsd']:.4g}", "idaf": f"{scores[FIRST]['idaf']:.4g}",
                     "beta": "0.01", "p": f"{scores[FIRST]['p_value']:.4g}",
                     "q": f"{scores[FIRST]['q_value']:.4g}"}


def test_optional_sections(site, inputs, tmp_path):
    with_info = (site / "features" / f"{FIRST}.html").read_text(encoding="utf-8")
    without = (site / "features" / f"{SECOND}.html").read_text(encoding="utf-8")
    assert 'id="logit-lens"' in with_info and 'id="mcs"' in with_info
    assert 'id="logit-lens"' not in without and 'id="mcs"' not in without
    bare = replace(inputs, scores=inputs.scores.drop("p_value", "q_value"), logit_lens=None, mcs=None,
                   refs=None)
    out = build_feature_pages(bare, tmp_path / "bare", CONFIG)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="significant"' not in index and 'data-key="q"' not in index
    page = (out / "features" / f"{FIRST}.html").read_text(encoding="utf-8")
    assert 'id="logit-lens"' not in page and "pair " in page and "<th>q</th>" not in page
    dead = (out / "features" / "7.html").read_text(encoding="utf-8")
    assert "dead" in dead and "Never fires in es." in dead


def test_paired_scores_show_class_and_rho(inputs, tmp_path):
    """A paired-method table: the index data carry class and rho (and list them in data.stats,
    which pages.js turns into columns), the feature page's score table shows them all."""
    scores = paired_scores(inputs.scores)
    out = build_feature_pages(replace(inputs, scores=scores), tmp_path / "paired", CONFIG)
    rows = {r["feature_id"]: r for r in scores.iter_rows(named=True)}
    data = index_data(out)
    assert data["stats"] == ["class", "rho", "rho_lo", "ratio", "lex"]  # no p or q in this table
    assert [f["id"] for f in data["features"]] == select_features(scores, CONFIG)
    for f in data["features"]:
        row = rows[f["id"]]
        assert f["class"] == row["class"] and "bi" not in f and "jsd" not in f
        assert f["rho"] == (None if row["dead"] else pytest.approx(row["rho"]))
        assert f["rho_lo"] == (None if row["dead"] else pytest.approx(row["rho_lo"]))
    index = parse((out / "index.html").read_text(encoding="utf-8"))
    keys = [th.attrs["data-key"] for th in index.iter("th")]
    assert keys == ["id", "rank", "class", "rho", "rho_lo", "ratio", "lex", "d0", "d1", "tok"]

    def score_table(fid: int) -> dict[str, str]:
        page = parse((out / "features" / f"{fid}.html").read_text(encoding="utf-8"))
        return {tr.find_tag("th").text(): tr.find_tag("td").text()
                for tr in page.find_tag("table").iter("tr")}

    r = rows[FIRST]
    assert score_table(FIRST) == {
        "rank": "0", "class": r["class"], "rho": f"{r['rho']:.4g}",
        "rho lower bound": f"{r['rho_lo']:.4g}", "rho given lengths": f"{r['rho_len']:.4g}",
        "rho_para (paraphrase ceiling)": "0.95", "rho / rho_para": f"{r['ratio']:.4g}",
        "lex (shared-string share)": f"{r['lex']:.4g}",
        "rho without shared strings": f"{r['rho_nonlex']:.4g}", "co-fired pairs": str(r["n_cofire"])}
    dead = score_table(7)
    assert dead["class"] == "dead" and dead["rho"] == "–" and dead["rank"].startswith("dead")


def test_bad_inputs_name_the_field(inputs, tmp_path):
    with pytest.raises(InputError, match="neuronpedia_url"):
        FeaturePagesConfig(neuronpedia_url="http://example.org/{model}/{feature}")
    with pytest.raises(InputError, match="neuronpedia_url"):
        FeaturePagesConfig(neuronpedia_url="https://www.neuronpedia.org/x/y/")
    with pytest.raises(InputError, match="feature_pages.features"):
        select_features(inputs.scores, FeaturePagesConfig(features=(99,)))
    with pytest.raises(InputError, match="token table: lang"):
        collect_feature_data(replace(inputs, langs=["en", "fr"]), CONFIG)
    with pytest.raises(InputError, match="activation table: columns"):
        collect_feature_data(replace(inputs, acts=inputs.acts.drop("value")), CONFIG)


def test_failed_build_keeps_the_old_folder(inputs, tmp_path, monkeypatch):
    out = build_feature_pages(inputs, tmp_path / "site", CONFIG)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(render, "render_feature_page", boom)
    with pytest.raises(RuntimeError, match="killed"):
        build_feature_pages(inputs, out, replace(CONFIG, top_n=6))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]


# --- in headless Chromium -----------------------------------------------------------------------


def rendered_rows(dom: Node) -> list[tuple[int, bool, list[str]]]:
    """(feature id, hidden, cell texts) per row of the rendered index, in DOM order."""
    out = []
    for tr in dom.find_id("rows").iter("tr"):
        cells = [td.text() for td in tr.iter("td")]
        out.append((int(cells[0]), "hidden" in tr.attrs, cells))
    return out


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    env = os.environ.get("FEATURE_PAGE_SCREENSHOTS")
    path = Path(env) if env else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@needs_chromium
def test_index_renders_in_chromium(site, inputs, shots):
    dom = parse(dump_dom(file_url(site / "index.html")))
    rows = rendered_rows(dom)
    ids = select_features(inputs.scores, CONFIG)
    assert [r[0] for r in rows] == ids  # default: rank ascending, dead ones last
    assert not any(hidden for _, hidden, _ in rows)
    assert dom.find_id("status").text() == f"{len(ids)} of {len(ids)} features"
    rank_th = next(th for th in dom.iter("th") if th.attrs.get("data-key") == "rank")
    assert rank_th.attrs["aria-sort"] == "ascending"
    # The hostile token is text in a cell; the only scripts are the page's own two.
    assert any(EVIL in cells[-1] for _, _, cells in rows)
    scripts = list(dom.iter("script"))
    assert len(scripts) == 2 and {s.attrs.get("id") for s in scripts} == {None, "feature-data"}
    assert float(next(dom.iter("html")).attrs["data-ready-ms"]) > 0  # set once the table is rendered
    png = screenshot(file_url(site / "index.html"), shots / "index.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_index_sorts_and_filters_from_the_hash(site, inputs):
    bi = {f: b for f, b in inputs.scores.select("feature_id", "bi_score").iter_rows()}
    ids = select_features(inputs.scores, CONFIG)
    dom = parse(dump_dom(file_url(site / "index.html", "sort=bi&desc=1")))
    alive = sorted((f for f in ids if bi[f] is not None and not np.isnan(bi[f])), key=lambda f: -bi[f])
    assert [r[0] for r in rendered_rows(dom)] == alive + sorted(set(ids) - set(alive))
    th = next(th for th in dom.iter("th") if th.attrs.get("data-key") == "bi")
    assert th.attrs["aria-sort"] == "descending"

    q = {f: v for f, v in inputs.scores.select("feature_id", "q_value").iter_rows()}
    dom = parse(dump_dom(file_url(site / "index.html", "sig=1")))
    visible = [f for f, hidden, _ in rendered_rows(dom) if not hidden]
    assert visible == [f for f in ids if q[f] is not None and q[f] < 0.05]

    dom = parse(dump_dom(file_url(site / "index.html", "filter=a%C3%B1o")))
    data = {f["id"]: f for f in index_data(site)["features"]}
    visible = [f for f, hidden, _ in rendered_rows(dom) if not hidden]
    assert visible == [f for f in ids if any("año" in t for ts in data[f]["t"] for t in ts)]


@needs_chromium
def test_feature_page_screenshot(site, shots):
    url = file_url(site / "features" / f"{FIRST}.html")
    dom = parse(dump_dom(url))
    assert any(EVIL in span.text() for span in dom.iter("span"))
    assert not list(dom.iter("script"))
    png = screenshot(url, shots / "feature.png", BrowserConfig(window=(1280, 1400)))
    assert png.stat().st_size > 10_000


@needs_chromium
def test_header_clicks_sort_and_csp_blocks_inline_scripts(site, inputs, tmp_path):
    """A copy of the index with two extra scripts: a same-folder file (allowed) that clicks the
    bi_score header twice, and an inline one (which the page's CSP must block)."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    (copy / "assets" / "click.js").write_text(
        'const b = document.querySelector(\'th[data-key="bi"] button\');\n'
        "b.click(); b.click();\n"
        "document.documentElement.dataset.hash = location.hash;\n", encoding="utf-8")
    index = (copy / "index.html").read_text(encoding="utf-8")
    injected = ('<script src="assets/click.js" defer></script>'
                "<script>document.documentElement.dataset.inline = 'ran';</script></body>")
    (copy / "index.html").write_text(index.replace("</body>", injected), encoding="utf-8")
    dom = parse(dump_dom(file_url(copy / "index.html")))
    root = next(dom.iter("html"))
    assert "inline" not in root.attrs  # blocked by the CSP
    assert root.attrs["data-hash"] == "#sort=bi&desc=1"
    bi = dict(inputs.scores.select("feature_id", "bi_score").iter_rows())
    shown = [f for f, _, _ in rendered_rows(dom)]
    alive = [f for f in shown if bi[f] is not None and not np.isnan(bi[f])]
    assert alive == sorted(alive, key=lambda f: -bi[f]) and shown[len(alive):] == [7]


@needs_chromium
def test_paired_index_renders_class_and_rho_in_chromium(inputs, tmp_path):
    scores = paired_scores(inputs.scores)
    out = build_feature_pages(replace(inputs, scores=scores), tmp_path / "paired", CONFIG)
    rows = {r["feature_id"]: r for r in scores.iter_rows(named=True)}
    shown = rendered_rows(parse(dump_dom(file_url(out / "index.html", "sort=rho&desc=1"))))
    assert sorted(f for f, _, _ in shown) == sorted(select_features(scores, CONFIG))
    # Cells: id, rank, then data.stats in order (class is the text one), densities, tokens.
    assert [cells[2] for _, _, cells in shown] == [rows[f]["class"] for f, _, _ in shown]
    alive = [f for f, _, _ in shown if not rows[f]["dead"]]
    assert alive == sorted(alive, key=lambda f: -rows[f]["rho"])
    assert [f for f, _, _ in shown][len(alive):] == [7]  # missing rho last


def test_significant_features_beyond_top_n_get_pages():
    # Ranks 0-3 are rare features the null rejects; 4 and 6 are significant, 5 is not.
    scores = pl.DataFrame({
        "feature_id": pl.Series(range(8), dtype=pl.UInt32),
        "rank": pl.Series([0, 1, 2, 3, 4, 5, 6, None], dtype=pl.UInt32),
        "q_value": [1.0, 1.0, 1.0, 1.0, 0.01, 0.2, 0.04, None],
    })
    assert select_features(scores, FeaturePagesConfig(top_n=2)) == [0, 1]
    assert select_features(scores, FeaturePagesConfig(top_n=2, top_significant=1)) == [0, 1, 4]
    assert select_features(scores, FeaturePagesConfig(top_n=2, top_significant=5)) == [0, 1, 4, 6]
    without_null = scores.drop("q_value")
    assert select_features(without_null, FeaturePagesConfig(top_n=2, top_significant=5)) == [0, 1]
