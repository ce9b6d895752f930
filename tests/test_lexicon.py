"""Lexicon check: FreeDict dictd parsing, word matching, top words and precision@k."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from polyglot_sae.errors import InputError
from polyglot_sae.lexicon.check import (CheckConfig, base_rate, is_translation, piece_word,
                                        precision_at_k, precision_table, top_words_from_tokens,
                                        translated_features, translated_map)
from polyglot_sae.lexicon.freedict import (Lexicon, LexiconConfig, LexiconMissing, decode_b64,
                                           fold, iso3, load_lexicon, parse_entry)

REAL_DIR = Path("/usr/share/dictd")
HAS_REAL = (REAL_DIR / "freedict-eng-spa.index").exists() and (
    REAL_DIR / "freedict-spa-eng.index").exists()
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# Entries laid out like the real Debian files (freedict-eng-spa 0.3.1 / freedict-spa-eng): a
# headword line with /pronunciation/, then translations, numbered senses when there are several.
ENG_SPA = [
    ("god", "God /gɔd/\nDios\n"),
    ("son", "son /sɔn/\nhijo\n"),
    ("king", "king /kiŋ/\nrey\n"),
    ("day", "day /dei/\ndía\n"),
    ("year", "year /jəːr/\naño\n"),
    ("brother", "brother /brʌðər/\nhermano\n"),
    ("below", "below /bilou/\ndebajo de\n"),
    ("bed", "bed /bd/\n1. cuadro\n2. cauce, madre\n3. cama, lecho\n"),
    ("walk", "walk /wɔːk/\npasear\n"),
    ("camel", "camel /kæməl/\ncamello\n"),
]
SPA_ENG = [
    ("hija", "hija /ˈixa/\ndaughter\n"),
    ("casa", "casa /kˈasa/\nhouse\n"),
    ("casado", "casado /kasˈaðo/\nmarried\n"),
    ("hablar", "hablar /aβlˈaɾ/\nspeak, talk\n"),
    ("padre", "padre /pˈaðɾe/\nfather\n"),
    ("padres", "padres /pˈaðɾes/\nparents\n"),
    ("santa", "santa /sˈanta/\nholy, saint\n"),
    ("hermoso", "hermoso /eɾmˈoso/\nbeautiful\n"),
    ("vino", "vino /bˈino/\nwine\n"),
]


def _b64(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 64)
        out = _B64[r] + out
        if not n:
            return out


def write_dictd(folder: Path, stem: str, entries: list[tuple[str, str]]) -> Path:
    """A dictd dictionary as dictfmt writes it: metadata entries, base64 offsets, gzip data."""
    data, lines = b"", []
    for key, text in [("00databaseinfo", "test dictionary\n"), ("00databaseutf8", "\n"), *entries]:
        blob = text.encode()
        lines.append(f"{key}\t{_b64(len(data))}\t{_b64(len(blob))}")
        data += blob
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.index").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / f"{stem}.dict.dz").write_bytes(gzip.compress(data))
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dictd")
    write_dictd(d, "freedict-eng-spa", ENG_SPA)
    return write_dictd(d, "freedict-spa-eng", SPA_ENG)


@pytest.fixture(scope="module")
def lex(tiny_dir) -> Lexicon:
    return load_lexicon("en", "es", tiny_dir)


def test_base64_and_iso_codes():
    assert [decode_b64(s) for s in ("A", "B", "/", "BA", "EFb")] == [0, 1, 63, 64, 16731]
    assert all(decode_b64(_b64(n)) == n for n in (0, 5, 64, 4095, 123456))
    with pytest.raises(ValueError):
        decode_b64("A=")
    assert [iso3(c) for c in ("en", "es", "fr", "de", "pt", "it", "spa")] == [
        "eng", "spa", "fra", "deu", "por", "ita", "spa"]
    with pytest.raises(InputError, match="ISO 639-3"):
        iso3("x1")


def test_fold():
    assert fold("Dios") == fold("dios") == "dios"
    assert fold("día") == fold("Día") == fold("dia") == "dia"
    assert fold("  Año, ") == "ano" and fold("l'eau") == "l eau" and fold("Straße") == "strasse"
    assert fold("¡¿...!?") == ""


def test_parse_entry_real_layouts():
    # eng-spa: numbered senses, comma-separated translations
    assert parse_entry("bed /bd/\n1. cuadro\n2. cauce, madre\n3. cama, lecho\n") == (
        "bed", ["cuadro", "cauce", "madre", "cama", "lecho"])
    # deu-eng: <gram> and [domain] labels, notes, quoted examples, synonyms and see-also skipped
    entry = ('Tag /tˈɑːk/ <masc, n, sg>\nday <n>; daytime <n>\n         Note: unit of time\n'
             '      "Tag für Tag"  - day after day, day by day\n   Synonym: {Datum}\n\n'
             ' see: {Tage}, {Täge}\n\n')
    assert parse_entry(entry) == ("tag", ["day", "daytime"])
    assert parse_entry("Gott /ɡˈɔt/ <masc, n, sg>\n [relig.] God <n>\n", "gott") == (
        "gott", ["god"])
    assert parse_entry("", "Fallback")[0] == "fallback"
    assert parse_entry("robbed of sleep /ɹˈɒbd ɒv slˈiːp/\nrobadas al sueño <f>\n") == (
        "robbed of sleep", ["robadas al sueno"])


def test_direct_and_folding(lex):
    assert lex.sources[0].name == "freedict-eng-spa.index" and len(lex.sources) == 4
    assert lex.translates("God", "Dios") and lex.translates("god", "dios")
    assert lex.translates("day", "día") and lex.translates("DAY", "dia")
    assert lex.translates("daughter", "hija")  # only in spa-eng: read in reverse
    assert lex.translates("bed", "cama") and lex.translates("bed", "cauce")
    assert not lex.translates("god", "rey")
    assert lex.translations("god") == {"dios"} and lex.translations("Dios", 1) == {"god"}
    assert lex.match("god", "dios") == "direct god=dios"


def test_phrase_rule(lex):
    # "debajo de": one content token ("de" is shorter than min_phrase_token_len)
    assert lex.match("below", "debajo") == "phrase below=debajo"
    assert not lex.translates("below", "de")
    no_phrase = Lexicon("eng", "spa", [("below", "debajo de")],
                        config=LexiconConfig(max_phrase_tokens=1))
    assert not no_phrase.translates("below", "debajo")
    # two content tokens: no single token carries the meaning
    two = Lexicon("eng", "spa", [("watch", "reloj de pulsera")])
    assert not two.translates("watch", "reloj") and not two.translates("watch", "pulsera")


def test_inflection_rule(lex):
    # plural suffixes, on both sides, even for a word with its own entry (padres = parents)
    assert lex.match("kings", "reyes") == "direct kings->king=reyes->rey"
    assert lex.translates("years", "años") and lex.translates("sons", "hijos")
    assert lex.translates("father", "padres") and lex.translates("parents", "padres")
    # shared prefix >= 4 with short endings, for words without an entry of their own
    assert lex.translates("walked", "pasear") and not lex.translates("spoke", "hablar")
    assert lex.translates("speak", "habló") and lex.translates("talk", "hablaron")
    assert lex.translates("holy", "santos") and lex.translates("saint", "santo")
    # rejected: words with their own entry are not re-read as another lemma
    assert not lex.translates("son", "hija") and not lex.translates("house", "casado")
    # rejected: tails of 3 (hermoso is not hermano), a bare prefix of a lemma (came is not camel)
    assert not lex.translates("brother", "hermosa") and not lex.translates("brother", "hermoso")
    assert not lex.translates("came", "camello") and lex.translates("camels", "camello")
    assert lex.lemmas("hermanos", 1) == {"hermano"} and lex.lemmas("came", 0) == frozenset()
    # irregular forms are out of reach
    assert not lex.translates("said", "dijo")


def test_identical_rule(lex):
    assert lex.match("David", "David") == "identical" and lex.translates("Israel", "Israel")
    assert not lex.translates("son", "son")  # too short: Spanish "son" is "they are"
    off = load_lexicon("en", "es", lex.sources[0].parent, LexiconConfig(identical_min_len=0))
    assert not off.translates("David", "David")


def test_missing_lexicon(tmp_path):
    with pytest.raises(LexiconMissing) as err:
        load_lexicon("en", "es", tmp_path)
    assert isinstance(err.value, InputError)
    msg = str(err.value)
    assert str(tmp_path / "freedict-eng-spa.index") in msg
    assert "apt-get install dict-freedict-eng-spa" in msg
    # one direction is enough
    write_dictd(tmp_path, "freedict-spa-eng", SPA_ENG)
    assert load_lexicon("en", "es", tmp_path).translates("daughter", "hija")
    (tmp_path / "freedict-spa-eng.dict.dz").unlink()
    with pytest.raises(LexiconMissing, match="freedict-spa-eng.dict.dz"):
        load_lexicon("es", "en", tmp_path)


def test_wrong_format_names_file_and_line(tmp_path):
    write_dictd(tmp_path, "freedict-eng-spa", ENG_SPA)
    index = tmp_path / "freedict-eng-spa.index"
    good = index.read_text(encoding="utf-8").splitlines()
    index.write_text("\n".join([*good[:3], "king kiŋ no tabs", *good[3:]]) + "\n", "utf-8")
    with pytest.raises(InputError) as err:
        load_lexicon("en", "es", tmp_path)
    assert err.value.source == str(index) and err.value.field == "line 4"
    assert "3 tab-separated fields" in str(err.value) and "apt-get install" in err.value.fix
    index.write_text("\n".join([*good[:3], "king\tA*\tB", *good[3:]]) + "\n", "utf-8")
    with pytest.raises(InputError, match=r"freedict-eng-spa.index: line 4: bad dictd base64"):
        load_lexicon("en", "es", tmp_path)
    index.write_text("\n".join([*good, "king\tBAAA\tB"]) + "\n", "utf-8")
    with pytest.raises(InputError, match="past the end"):
        load_lexicon("en", "es", tmp_path)
    (tmp_path / "freedict-eng-spa.dict.dz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match="freedict-eng-spa.dict.dz: data: not a readable gzip"):
        load_lexicon("en", "es", tmp_path)


def test_piece_words_and_top_words():
    assert [piece_word(p) for p in ("▁God", "▁Dios", "ijo", "▁día", "Ġday")] == [
        "god", "dios", "ijo", "dia", "day"]
    assert [piece_word(p) for p in ("▁,", "▁12", "o", "<bos>", "<0xC3>", "▁", ".")] == [None] * 7
    assert piece_word("▁y") == "y"  # a whole one-letter word (Spanish "and")
    assert piece_word("ijo", CheckConfig(word_initial_only=True)) is None
    acts = pl.DataFrame({
        "pair_id": [0, 0, 1, 0, 0, 1, 2, 0],
        "lang": ["en", "en", "en", "es", "es", "es", "es", "en"],
        "token_pos": [1, 2, 1, 1, 2, 1, 1, 3],
        "feature_id": [7, 7, 7, 7, 7, 7, 7, 7],
        "value": [1.0, 0.5, 2.0, 3.0, 0.2, 0.1, 0.4, 9.0]})
    tokens = pl.DataFrame({
        "pair_id": [0, 0, 1, 0, 0, 1, 2, 0],
        "lang": ["en", "en", "en", "es", "es", "es", "es", "en"],
        "token_pos": [1, 2, 1, 1, 2, 1, 1, 3],
        "token_str": ["▁God", "▁said", "▁god", "▁Dios", "▁dijo", "▁dios", "▁Dijo", "▁,"]})
    top = top_words_from_tokens(acts, tokens, CheckConfig(top_n=2))
    assert top.rows() == [(7, "en", "god", 3.0), (7, "en", "said", 0.5),
                          (7, "es", "dios", 3.1), (7, "es", "dijo", 0.6000000000000001)]
    counted = top_words_from_tokens(acts.join(tokens, on=["pair_id", "lang", "token_pos"]),
                                    config=CheckConfig(top_n=1, weight="count"))
    assert counted.rows() == [(7, "en", "god", 2.0), (7, "es", "dijo", 2.0)]


def test_translated_features(lex):
    top = pl.DataFrame({
        "feature_id": [1, 1, 1, 2, 2, 3, 4, 4, 4, 4],
        "lang": ["en", "en", "es", "en", "es", "en", "en", "en", "en", "es"],
        "word": ["said", "king", "rey", "god", "rey", "god", "a", "b", "c", "dios"],
        "weight": [5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0, 3.0, 2.0, 1.0]})
    table = translated_features(top, lex, "en", "es")
    assert table.rows() == [(1, True, "king", "rey", "direct king=rey"),
                            (2, False, None, None, None), (3, False, None, None, None),
                            (4, False, None, None, None)]
    assert translated_features(top.with_columns(word=pl.col("word").replace("c", "god")),
                               lex, "en", "es", top_n=3)["translated"].to_list()[3]
    assert not translated_features(top.with_columns(word=pl.col("word").replace("c", "god")),
                                   lex, "en", "es", top_n=2)["translated"].to_list()[3]
    swapped = translated_features(top, lex, "es", "en")  # word_a is now the Spanish word
    assert swapped.row(0) == (1, True, "rey", "king", "direct king=rey")
    assert translated_map(table) == {1: True, 2: False, 3: False, 4: False}
    assert is_translation(["said", "king"], ["rey"], lex) and not is_translation(
        ["said", "king"], ["rey"], lex, top_n=1)
    with pytest.raises(InputError, match="does not fit"):
        translated_features(top, lex, "en", "fr")


def test_precision_at_k_by_hand():
    translated = {f: f % 3 == 0 for f in range(12)}  # 0, 3, 6, 9 translated: base rate 4/12
    ranking = [3, 6, 1, 9, 2, 0, 5]
    table = precision_at_k(ranking, translated, ks=(1, 2, 4, 10), method="bi")
    assert table.columns == ["method", "k", "precision", "n", "base_rate"]
    assert table["precision"].to_list() == [1.0, 1.0, 0.75, 4 / 7]
    assert table["n"].to_list() == [1, 2, 4, 7]
    assert table["base_rate"].to_list() == pytest.approx([1 / 3] * 4)
    # supported subset as the base, and features the table does not know count as untranslated
    t2 = precision_at_k([3, 99], translated, ks=(2,), base_features=[0, 1, 3])
    assert t2.row(0) == ("ranking", 2, 0.5, 2, pytest.approx(2 / 3))
    assert base_rate({}) is None and precision_at_k([], {}, ks=(5,)).row(0) == (
        "ranking", 5, None, 0, None)
    both = precision_table({"a": [0, 1], "b": [1, 2]}, translated, ks=(2,))
    assert both.select("method", "precision").rows() == [("a", 0.5), ("b", 0.0)]
    with pytest.raises(InputError, match="repeat"):
        precision_at_k([1, 1], translated)


@pytest.mark.skipif(not HAS_REAL, reason="Debian dict-freedict-eng-spa/spa-eng not installed")
def test_real_freedict_eng_spa():
    real = load_lexicon("en", "es")
    for en, es in [("god", "dios"), ("son", "hijo"), ("king", "rey"), ("day", "día"),
                   ("seven", "siete"), ("years", "años"), ("sons", "hijos"), ("David", "David")]:
        assert real.translates(en, es), (en, es)
    assert not real.translates("god", "rey") and not real.translates("said", "dijo")
