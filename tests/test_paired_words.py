"""A feature's words per language (the tokens its maxima sit on, by mass) and the summary's
paired headline, against hand-computed answers."""

import polars as pl
import pytest

from polyglot_sae.errors import InputError
from polyglot_sae.paired.report import headline, top_table
from polyglot_sae.paired.words import feature_words, piece_text, words_by_feature

VOCAB = pl.DataFrame({"token_id": [1, 2, 3, 4], "token_str": ["▁God", "▁Dios", "▁the", "▁el"]})


def _table(rows):
    return pl.DataFrame(rows, schema={"pair_id": pl.UInt32, "lang": pl.String,
                                      "feature_id": pl.UInt32, "value": pl.Float32,
                                      "token_id": pl.UInt32}, orient="row")


def test_words_rank_tokens_by_activation_mass():
    table = _table([(0, "en", 7, 1.0, 3), (1, "en", 7, 0.5, 3), (2, "en", 7, 2.0, 1),
                    (0, "es", 7, 0.2, 4), (1, "es", 7, 3.0, 2)])
    words = feature_words(table, VOCAB, ["en", "es"], top=2)
    en = words.filter(pl.col("lang") == "en")
    # God carries 2.0 of 3.5, "the" 1.5: God first, although "the" wins on count
    assert en["word"].to_list() == ["God", "the"]
    assert en["share"].to_list() == pytest.approx([2.0 / 3.5, 1.5 / 3.5])
    assert en["n"].to_list() == [1, 2]
    assert words_by_feature(words, ["en", "es"]) == {7: {"en": ["God", "the"], "es": ["Dios", "el"]}}
    assert feature_words(table, VOCAB, ["en", "es"], top=1)["word"].to_list() == ["God", "Dios"]


def test_words_need_the_token_of_the_max():
    with pytest.raises(InputError, match="token_id"):
        feature_words(_table([(0, "en", 1, 1.0, 1)]).drop("token_id"), VOCAB, ["en"])


def test_piece_text_drops_the_word_marker_only():
    assert piece_text("▁Jerusalén") == "Jerusalén" and piece_text("alén") == "alén"


def test_headline_counts_each_class():
    scores = pl.DataFrame({
        "feature_id": pl.Series(range(8), dtype=pl.UInt32),
        "class": ["concept", "concept", "shared_string", "length", "weak",
                  "lang_specific:en", "low_support", "dead"],
        "rank": pl.Series([0, 1, 2, 3, 4, None, None, None], dtype=pl.UInt32),
        "rho": [0.9, 0.8, 0.7, 0.6, 0.1, None, None, None],
        "rho_lo": [0.8, 0.7, 0.6, 0.5, 0.0, None, None, None],
        "ratio": [1.0, None, 0.9, 0.8, 0.1, None, None, None],
        "lex": [0.0, 0.1, 0.9, 0.0, 0.0, None, None, None],
        "n_cofire": [20, 30, 40, 50, 60, 0, 1, 0],
    })
    text = headline(scores, ["en", "es"])
    assert text.startswith("**2 concept-bilingual features of 5 supported**; 1 shared-string")
    assert "1 en-specific, 0 es-specific" in text
    words = pl.DataFrame({"feature_id": [0, 0], "lang": ["en", "es"], "word": ["God", "Dios"]},
                         schema_overrides={"feature_id": pl.UInt32})
    table = top_table(scores, words, ["en", "es"], 2)
    assert len(table) == 4 and "| 0 | 0 | concept |" in table[2] and "God | Dios |" in table[2]
