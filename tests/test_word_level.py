"""Word-level evidence: the aligner on a planted lexicon, token-to-word maps, r_word and its bound
against numpy, and planted features that must land in concept, context and shared_string."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from polyglot_sae.align.segment import fold_word, token_words, words
from polyglot_sae.align.symmetrize import symmetrize
from polyglot_sae.align.tokens import words_of_tokens
from polyglot_sae.errors import InputError
from polyglot_sae.paired.classes import ClassConfig, classify
from polyglot_sae.paired.stats import bootstrap_weights, paired_stats
from polyglot_sae.paired.word_level import word_level_stats

LEX_EN = ["king", "house", "water", "bread", "light", "city", "river", "land", "son", "day",
          "hand", "god", "fire", "stone", "tree", "heart", "word", "people", "gold", "sea"]
LEX_ES = ["rey", "casa", "agua", "pan", "luz", "ciudad", "rio", "tierra", "hijo", "dia",
          "mano", "dios", "fuego", "piedra", "arbol", "corazon", "palabra", "pueblo", "oro",
          "mar"]


def planted_corpus(n: int, seed: int = 0):
    """Sentences of 4-8 lexicon words; the Spanish side is the word-by-word translation with
    a random local reordering (adjacent swaps), so the gold links are known."""
    rng = np.random.default_rng(seed)
    en, es, gold = [], [], []
    for _ in range(n):
        idx = rng.choice(len(LEX_EN), size=rng.integers(4, 9), replace=False)
        perm = np.arange(idx.size)
        for i in range(0, idx.size - 1, 2):
            if rng.random() < 0.3:
                perm[i], perm[i + 1] = perm[i + 1], perm[i]
        en.append([LEX_EN[i] for i in idx])
        es.append([LEX_ES[idx[j]] for j in perm])
        gold.append({(int(perm[j]), j) for j in range(idx.size)})
    return en, es, gold


def test_eflomal_reaches_aer_on_planted_lexicon():
    """Through the stage's own entry point: a pairs table in, a link table out; a pair whose
    Spanish side has no word is skipped and counted."""
    from polyglot_sae.align.aligner import AlignConfig
    from polyglot_sae.align.stage import align_pairs

    en, es, gold = planted_corpus(600)
    texts = [(p, lang, " ".join(ws)) for p, pair in enumerate(zip(en, es))
             for lang, ws in zip(("en", "es"), pair)]
    texts += [(600, "en", "king house"), (600, "es", "")]
    pairs = pl.DataFrame(texts, orient="row", schema={"pair_id": pl.UInt32, "lang": pl.String,
                                                      "text": pl.String})
    table, counts = align_pairs(pairs, "en", "es", AlignConfig())
    assert counts == {"pairs": 601, "aligned": 600, "skipped_empty": 1, "links": table.height}
    found = {(p, a, b) for p, a, b in table.select("pair_id", "word_a", "word_b").iter_rows()}
    sure = {(p, a, b) for p, g in enumerate(gold) for a, b in g}
    # every gold link is "sure": AER = 1 - 2|A∩S| / (|A| + |S|)
    aer = 1 - 2 * len(found & sure) / (len(found) + len(sure))
    assert aer <= 0.1, aer
    row = table.row(0, named=True)  # spans index the original text
    text = texts[2 * row["pair_id"]][2]
    assert text[row["start_a"]:row["end_a"]] == en[row["pair_id"]][row["word_a"]]


def test_symmetrize_heuristics():
    fwd = {(0, 0), (1, 1), (2, 1)}
    rev = {(0, 0), (1, 1), (2, 2)}
    assert symmetrize(fwd, rev, "intersect") == [(0, 0), (1, 1)]
    grown = symmetrize(fwd, rev, "grow_diag_final_and")
    assert set(grown) >= {(0, 0), (1, 1)} and (2, 2) in grown  # neighbour of (1, 1)
    with pytest.raises(ValueError):
        symmetrize(fwd, rev, "union")


def test_segmentation_spans_and_no_space_fallback():
    text = "Y dijo Dios: Sea la luz. LORD's 日本"
    ws, spans = words(text)
    assert ws == ["Y", "dijo", "Dios", ":", "Sea", "la", "luz", ".", "LORD's", "日", "本"]
    assert [text[s:e] for s, e in spans] == ws
    assert fold_word("Jehová") == "jehova" and fold_word("DAVID") == "david"


def test_token_words_overlap():
    text = "el rey, dijo"
    spans = words(text)[1]
    # tokens: "el", " r", "ey", ",", " dijo" and a special with empty offsets
    offsets = np.array([[0, 2], [2, 4], [4, 6], [6, 7], [7, 12], [0, 0]])
    tok, word = token_words(spans, offsets, text)
    assert list(zip(tok.tolist(), word.tolist())) == [(0, 0), (1, 1), (2, 1), (3, 2), (4, 3)]


def test_words_of_tokens_refuses_other_text(tmp_path):
    from polyglot_sae.align.tokens import load_tokenizer
    from polyglot_sae.model.load import _byte_tokenizer  # the tiny models' tokenizer

    _byte_tokenizer().save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    texts = pl.DataFrame({"pair_id": [7], "lang": ["es"], "text": ["El río"]},
                         schema={"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String})
    ids = [tok.token_to_id("<bos>"), *tok.encode("El río", add_special_tokens=False).ids]
    table = pl.DataFrame({"pair_id": [7] * len(ids), "lang": ["es"] * len(ids),
                          "token_pos": list(range(len(ids))), "token_id": ids},
                         schema={"pair_id": pl.UInt32, "lang": pl.String,
                                 "token_pos": pl.UInt16, "token_id": pl.UInt32})
    got = words_of_tokens(texts, table, tok)
    assert got["token_pos"].min() == 1  # BOS covers no word
    assert set(got["word"].to_list()) == {0, 1}
    # the byte-level pieces of "í" all map to "río"
    assert got.filter(pl.col("word") == 1).height == len("río".encode())
    with pytest.raises(InputError, match="pair 7"):
        words_of_tokens(texts.with_columns(text=pl.lit("El mar")), table, tok)


def _planted_tables(n: int, seed: int = 1):
    """Per-token (one token per word, BOS at 0) activations of five planted features over
    a corpus with gold links:
    0 fires on king/rey (values correlated across the link), 1 on every word of 'topic'
    verses, 2 on every word of every verse (dense), 3 on the name David in both languages,
    4 on king in English and on a random other word of the verse in Spanish."""
    rng = np.random.default_rng(seed)
    en, es, gold = planted_corpus(n, seed)
    rows, tokmap, links, texts = [], [], [], []
    for p, (a, b, g) in enumerate(zip(en, es, gold)):
        if p % 3 == 0:  # a name, spelt alike, at the end of both sides
            a, b = [*a, "David"], [*b, "David"]
            g = g | {(len(a) - 1, len(b) - 1)}
        topic = rng.random() < 0.3
        strength = rng.uniform(1, 3)
        for lang, ws in (("en", a), ("es", b)):
            texts.append((p, lang, " ".join(ws)))
            for w, word in enumerate(ws):
                tokmap.append((p, lang, w + 1, w))
                if word in ("king", "rey"):
                    rows.append((p, lang, w + 1, 0, strength + rng.normal(0, 0.1)))
                if topic:
                    rows.append((p, lang, w + 1, 1, rng.uniform(0.5, 1.5)))
                rows.append((p, lang, w + 1, 2, rng.uniform(0.1, 2.0)))
                if word == "David":
                    rows.append((p, lang, w + 1, 3, rng.uniform(1, 2)))
            if "king" in a:
                if lang == "en":
                    rows.append((p, lang, a.index("king") + 1, 4, 1.0))
                else:
                    other = [w for w, x in enumerate(ws) if x != "rey"]
                    rows.append((p, lang, int(rng.choice(other)) + 1, 4, 1.0))
        links.extend((p, i, j) for i, j in sorted(g))
    acts = pl.DataFrame(rows, orient="row", schema={
        "pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
        "feature_id": pl.UInt32, "value": pl.Float32})
    tokmap = pl.DataFrame(tokmap, orient="row", schema={
        "pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16, "word": pl.UInt16})
    texts = pl.DataFrame(texts, orient="row", schema={"pair_id": pl.UInt32, "lang": pl.String,
                                                      "text": pl.String})
    spans = {}
    for p, lang, text in texts.iter_rows():
        spans[(p, lang)] = words(text)[1]
    link_table = pl.DataFrame(
        [(p, i, j, *spans[(p, "en")][i], *spans[(p, "es")][j]) for p, i, j in links],
        orient="row", schema={"pair_id": pl.UInt32, "word_a": pl.UInt16, "word_b": pl.UInt16,
                              "start_a": pl.UInt32, "end_a": pl.UInt32, "start_b": pl.UInt32,
                              "end_b": pl.UInt32})
    return acts, tokmap, link_table, texts


@pytest.fixture(scope="module")
def planted():
    acts, tokmap, links, texts = _planted_tables(400)
    half = 200  # two shards, as the extraction writes them
    shards = [(acts.filter(sel).lazy(), tokmap.filter(sel_t)) for sel, sel_t in (
        (pl.col("pair_id") < half, pl.col("pair_id") < half),
        (pl.col("pair_id") >= half, pl.col("pair_id") >= half))]
    stats, examples = word_level_stats(
        shards, {("en", "es"): links}, texts, scored=np.arange(400), d_sae=6,
        langs=["en", "es"], replicates=200, seed=3)
    return acts, tokmap, links, texts, stats, examples


def _dense_links(acts, tokmap, links, feature):
    """x, y per link, straight from the tables (the reference)."""
    word_acts = {}
    for p, lang, pos, f, v in acts.iter_rows():
        if f == feature:
            word_acts[(p, lang, pos - 1)] = max(word_acts.get((p, lang, pos - 1), 0.0), v)
    x = np.array([word_acts.get((p, "en", i), 0.0) for p, i, *_ in links.iter_rows()])
    y = np.array([word_acts.get((p, "es", j), 0.0) for p, _, j, *_ in links.iter_rows()])
    return x, y, links["pair_id"].to_numpy()


def test_r_word_and_bound_against_numpy(planted):
    acts, tokmap, links, _, stats, _ = planted
    weights = bootstrap_weights(400, 200, 3).astype(np.float64)
    for feature in (0, 1, 2, 4):
        x, y, pair = _dense_links(acts, tokmap, links, feature)
        row = stats.row(feature, named=True)
        assert row["r_word"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
        assert row["n_cofire_word"] == int(((x > 0) & (y > 0)).sum())
        reps = []
        for b in range(1, 201):
            w = weights[pair, b]
            mx, my = np.average(x, weights=w), np.average(y, weights=w)
            cov = np.average((x - mx) * (y - my), weights=w)
            var = np.average((x - mx) ** 2, weights=w) * np.average((y - my) ** 2, weights=w)
            reps.append(cov / np.sqrt(var) if var > 1e-12 else 0.0)
        assert row["r_word_lo"] == pytest.approx(np.sort(reps)[9], abs=1e-7)
    assert stats.row(5, named=True)["r_word"] is None  # never fires: no variance


def test_align_lift_and_lex_word(planted):
    acts, tokmap, links, texts, stats, examples = planted
    lift = dict(zip(stats["feature_id"].to_list(), stats["align_lift"].to_list()))
    assert lift[0] > 0.8  # king/rey: the aligned word fires, the others never
    assert abs(lift[1]) < 0.05 and abs(lift[2]) < 0.05  # topic, dense
    assert lift[4] < 0.0  # fires on the wrong word
    lex = dict(zip(stats["feature_id"].to_list(), stats["lex_word"].to_list()))
    assert lex[3] == 1.0 and lex[0] == 0.0
    top = examples.filter(pl.col("feature_id") == 0)
    assert top.height == 3 and (top["x"] * top["y"]).is_sorted(descending=True)


def _tangled(seed: int = 5, n: int = 40, d: int = 4):
    """Words of one to three tokens, tokens that cover two words, words in two links (the
    grow-diag heuristics' many-to-many), activations on random tokens."""
    rng = np.random.default_rng(seed)
    acts, tokmap, links, texts = [], [], [], []
    for p in range(n):
        sizes = {}
        for lang in ("en", "es"):
            m = int(rng.integers(3, 7))
            sizes[lang] = m
            texts.append((p, lang, " ".join(f"w{i}" for i in range(m))))
            pos = 1
            for w in range(m):
                for _ in range(int(rng.integers(1, 3))):
                    tokmap.append((p, lang, pos, w))
                    pos += 1
                if w + 1 < m and rng.random() < 0.3:  # this token also starts the next word
                    tokmap.append((p, lang, pos - 1, w + 1))
            for _ in range(int(rng.integers(2, 3 * pos))):
                acts.append((p, lang, int(rng.integers(0, pos)), int(rng.integers(0, d)),
                             float(rng.gamma(2.0))))
        for i in range(sizes["en"]):
            for j in rng.choice(sizes["es"], size=int(rng.integers(0, 3)), replace=False):
                links.append((p, i, int(j), 3 * i, 3 * i + 2, 3 * int(j), 3 * int(j) + 2))
    acts = pl.DataFrame(acts, orient="row", schema={
        "pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
        "feature_id": pl.UInt32, "value": pl.Float32}).unique(
        ["pair_id", "lang", "token_pos", "feature_id"], keep="first", maintain_order=True)
    tokmap = pl.DataFrame(tokmap, orient="row", schema={
        "pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16, "word": pl.UInt16})
    links = pl.DataFrame(links, orient="row", schema={
        "pair_id": pl.UInt32, "word_a": pl.UInt16, "word_b": pl.UInt16, "start_a": pl.UInt32,
        "end_a": pl.UInt32, "start_b": pl.UInt32, "end_b": pl.UInt32})
    texts = pl.DataFrame(texts, orient="row", schema={"pair_id": pl.UInt32, "lang": pl.String,
                                                      "text": pl.String})
    return acts, tokmap, links, texts


def test_many_word_tokens_and_many_links_against_a_loop():
    """r_word, the co-fired count and align_lift against a plain loop over links, with words
    of several tokens, tokens of two words and words in two links; the same numbers to the
    bit with the rows shuffled, to rounding with the pairs cut into other shards."""
    d, n = 4, 40
    acts, tokmap, links, texts = _tangled(n=n, d=d)
    word_act = {}
    for p, lang, pos, f, v in acts.iter_rows():
        for (w,) in tokmap.filter((pl.col("pair_id") == p) & (pl.col("lang") == lang)
                                  & (pl.col("token_pos") == pos)).select("word").iter_rows():
            word_act[(f, p, lang, w)] = max(word_act.get((f, p, lang, w), 0.0), v)
    words_of = {(p, lang): sorted(set(g["word"].to_list())) for (p, lang), g in
                tokmap.group_by("pair_id", "lang")}

    def run(shards):
        return word_level_stats(shards, {("en", "es"): links}, texts, scored=np.arange(n),
                                d_sae=d, langs=["en", "es"], replicates=20, seed=1)[0]

    cut = pl.col("pair_id") < 17
    stats = run([(acts.filter(cut).lazy(), tokmap.filter(cut)),
                 (acts.filter(~cut).lazy(), tokmap.filter(~cut))])
    for f in range(d):
        x = np.array([word_act.get((f, p, "en", i), 0.0) for p, i, *_ in links.iter_rows()])
        y = np.array([word_act.get((f, p, "es", j), 0.0) for p, _, j, *_ in links.iter_rows()])
        row = stats.row(f, named=True)
        assert row["r_word"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
        assert row["n_cofire_word"] == int(((x > 0) & (y > 0)).sum())
        lifts = []
        for src, trg, t_lang, col in ((x, y, "es", 2), (y, x, "en", 1)):
            terms = []
            for (p, *words_), s, t in zip(links.iter_rows(), src, trg):
                if s > 0:
                    fire = [word_act.get((f, p, t_lang, w), 0.0) > 0
                            for w in words_of[(p, t_lang)]]
                    m = len(fire)
                    terms.append((t > 0) - ((sum(fire) - (t > 0)) / (m - 1) if m > 1 else 0))
            lifts.append(np.mean(terms))
        assert row["align_lift"] == pytest.approx(min(lifts), abs=1e-12)
    shuffled = acts.sample(fraction=1.0, shuffle=True, seed=2)
    assert run([(shuffled.filter(cut).lazy(), tokmap.filter(cut)),
                (shuffled.filter(~cut).lazy(), tokmap.filter(~cut))]).equals(stats)
    other = run([(shuffled.filter(pl.col("pair_id") % 2 == r).lazy(),
                  tokmap.filter(pl.col("pair_id") % 2 == r)) for r in (1, 0)])
    for col in stats.columns:
        assert other[col].to_numpy() == pytest.approx(stats[col].to_numpy(), abs=1e-12)


def test_planted_classes(planted):
    acts, tokmap, links, texts, words_stats, _ = planted
    maxacts = (acts.group_by("pair_id", "lang", "feature_id").agg(pl.col("value").max())
               .sort("pair_id", "lang", "feature_id"))
    verse = paired_stats(maxacts, n_pairs=400, d_sae=6, langs=["en", "es"])
    scores = classify(verse.join(words_stats, on="feature_id"), ClassConfig(), ["en", "es"])
    cls = dict(zip(scores["feature_id"].to_list(), scores["class"].to_list()))
    assert cls[0] == "concept"
    assert cls[1] == "context"  # topic verses: verse-level agreement only
    assert cls[3] == "shared_string"
    # without word-level columns the verse-level rule alone decides, as before
    verse_only = classify(verse, ClassConfig(), ["en", "es"])
    assert dict(zip(verse_only["feature_id"].to_list(), verse_only["class"].to_list()))[1] \
        == "concept"
    ranked = scores.filter(pl.col("rank").is_not_null()).sort("rank")["feature_id"].to_list()
    assert ranked[0] == 0 and "rank_verse" in scores.columns


def test_aligned_examples_on_the_feature_page(tmp_path):
    """The word-level section: numbers, both linked words highlighted in their verses with their
    activations, hostile text escaped."""
    from dataclasses import replace

    from html_dom import parse
    from test_feature_pages import CONFIG, EVIL, FIRST, INPUTS

    from polyglot_sae.report.page_entries import word_entries
    from polyglot_sae.report.pages import build_feature_pages

    scores = INPUTS.scores.select("feature_id").with_columns(
        r_word=pl.lit(0.5), r_word_lo=pl.lit(0.25), align_lift=pl.lit(0.75),
        lex_word=pl.lit(0.0), n_cofire_word=pl.lit(12), n_links=pl.lit(400))
    scores.write_parquet(tmp_path / "scores.parquet")
    texts = pl.DataFrame({"pair_id": [3, 3], "lang": list(INPUTS.langs),
                          "text": [f"The king {EVIL} spoke.", "Habló el rey."]},
                         schema={"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String})
    texts.write_parquet(tmp_path / "pairs.parquet")
    pl.DataFrame({"feature_id": [FIRST], "langs": ["-".join(INPUTS.langs)], "pair_id": [3],
                  "word_a": [1], "word_b": [2], "x": [2.5], "y": [1.5]},
                 schema={"feature_id": pl.UInt32, "langs": pl.String, "pair_id": pl.UInt32,
                         "word_a": pl.UInt16, "word_b": pl.UInt16, "x": pl.Float32,
                         "y": pl.Float32}).write_parquet(tmp_path / "examples.parquet")
    entries = word_entries(tmp_path / "scores.parquet", tmp_path / "examples.parquet",
                           tmp_path / "pairs.parquet")
    assert [s[1:4] for s in entries[FIRST].examples[0].sides] == [
        ("The ", "king", f" {EVIL} spoke."), ("Habló el ", "rey", ".")]
    out = build_feature_pages(replace(INPUTS, words=entries), tmp_path / "site", CONFIG)
    html = (out / "features" / f"{FIRST}.html").read_text(encoding="utf-8")
    section = next(n for n in parse(html).iter("section") if n.attrs.get("id") == "words")
    assert [m.text() for m in section.iter("mark")] == ["king", "rey"]
    assert "0.75" in section.text() and "2.5" in section.text() and EVIL not in html
