"""Page entries from the stages' own files (polyglot_sae.report.page_entries): the logit lens,
the causal check's tested features and its whole dictionary, on the synthetic pages input of
test_feature_pages."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from html_dom import parse
from polyglot_sae.report.page_data import LogitLens, select_features
from polyglot_sae.report.page_entries import logit_lens_entries
from polyglot_sae.report.pages import build_feature_pages
from test_feature_pages import CONFIG, EVIL, FIRST, INPUTS


@pytest.fixture(scope="module")
def inputs():
    return INPUTS


def test_logit_lens_entries(tmp_path):
    stats = pl.DataFrame({
        "feature_id": pl.Series([3, 4], dtype=pl.UInt32),
        "class": pl.Series(["prediction", "flat"], dtype=pl.Enum(["flat", "prediction"])),
        "top_tokens": [["ñ", "▁a", EVIL], ["▁a", EVIL, "ñ"]],
        "top_values": [[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]],
        "bottom_tokens": [[EVIL, "▁a", "ñ"], ["▁a", EVIL, "ñ"]],
        "bottom_values": [[-3.0, -2.0, -1.0], [0.0, 0.0, 0.0]],
    })
    stats.write_parquet(tmp_path / "stats.parquet")
    lens = logit_lens_entries(tmp_path / "stats.parquet", k=2)
    assert lens[3] == LogitLens(top=[("ñ", 3.0), ("▁a", 2.0)], bottom=[(EVIL, -3.0), ("▁a", -2.0)],
                                token_class="prediction")
    assert lens[4].token_class == "flat" and len(lens[4].top) == 2


def test_causal_section_from_the_table(inputs, tmp_path):
    """The causal check's verdict, KL and loss effects with intervals, q-values, control bars and
    steering on the feature page; controls and untested ids get no section; the source string
    is escaped."""
    from polyglot_sae.report.page_entries import causal_entries

    langs = list(inputs.langs)
    row = {"feature_id": [FIRST, 2, 40], "verdict": ["one:en", "both", "neither"],
           "source": [f"paired:top20,{EVIL}", "seed:top20", "control"],
           "is_control": [False, False, True]}
    for i, lang in enumerate(langs):
        row |= {f"effect_{lang}": [0.25 + i, 0.5, 0.0], f"effect_{lang}_lo": [0.125, 0.25, 0.0],
                f"effect_{lang}_hi": [0.5, 1.0, 0.0], f"n_sentences_{lang}": [20, 7, 20],
                f"control_p95_{lang}": [0.0625, 0.0625, 0.0625],
                f"kl_{lang}": [0.75 + i, 0.5, 0.0], f"kl_{lang}_lo": [0.375, 0.25, 0.0],
                f"kl_{lang}_hi": [1.5, 1.0, 0.0], f"q_{lang}": [0.03125, 0.5, None]}
        for w in langs:
            row[f"steer_{lang}_{w}"] = [1.5 if w == lang else -0.5, 0.0, 0.0]
    pl.DataFrame(row).write_parquet(tmp_path / "causal.parquet")
    entries = causal_entries(tmp_path / "causal.parquet", langs)
    assert set(entries) == {FIRST, 2}  # not the control
    out = build_feature_pages(replace(inputs, causal=entries), tmp_path / "site", CONFIG)
    html = (out / "features" / f"{FIRST}.html").read_text(encoding="utf-8")
    page = parse(html)
    section = next(n for n in page.iter("section") if n.attrs.get("id") == "causal")
    assert "one:en" in section.text() and EVIL not in html
    cells = [[td.text() for td in tr.iter("td")] for tr in section.find_tag("table").iter("tr")][1:]
    # KL, its interval, q, the loss increase, sentences, the controls' p95
    assert cells[0] == ["0.75", "0.375 – 1.5", "0.03125", "0.25", "20", "0.0625"]
    assert cells[1][0] == "1.75" and cells[1][3] == "1.25"
    untested = next(f for f in select_features(inputs.scores, CONFIG) if f not in entries)
    assert 'id="causal"' not in (out / "features" / f"{untested}.html").read_text(encoding="utf-8")


def test_ablation_section_from_the_dictionary_table(inputs, tmp_path):
    """The whole dictionary's ablation on every measured feature's page: KL, loss increase,
    residual and sentences per language; a feature measured in no language gets no section."""
    from polyglot_sae.report.page_entries import ablation_entries

    langs = list(inputs.langs)
    ids = select_features(inputs.scores, CONFIG)
    row = {"feature_id": ids, "alive": [True] * len(ids)}
    for i, lang in enumerate(langs):
        row |= {f"kl_{lang}": [0.5 + i] + [None] * (len(ids) - 1),
                f"dce_{lang}": [0.25] + [None] * (len(ids) - 1),
                f"residual_{lang}": [-1.5 + i] + [None] * (len(ids) - 1),
                f"n_dict_{lang}": [2 - i] + [0] * (len(ids) - 1)}
    pl.DataFrame(row).write_parquet(tmp_path / "dictionary.parquet")
    entries = ablation_entries(tmp_path / "dictionary.parquet", langs)
    assert set(entries) == {ids[0]}
    out = build_feature_pages(replace(inputs, ablation=entries), tmp_path / "site", CONFIG)
    page = parse((out / "features" / f"{ids[0]}.html").read_text(encoding="utf-8"))
    section = next(n for n in page.iter("section") if n.attrs.get("id") == "ablation")
    cells = [[td.text() for td in tr.iter("td")] for tr in section.find_tag("table").iter("tr")][1:]
    assert cells[0] == ["0.5", "0.25", "-1.5", "2"] and cells[1] == ["1.5", "0.25", "-0.5", "1"]
    assert 'id="ablation"' not in (out / "features" / f"{ids[1]}.html").read_text(encoding="utf-8")
