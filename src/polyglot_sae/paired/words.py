"""A feature's words per language: the tokens its per-pair maxima sit on, by activation mass.

For feature i and language L, every scored pair where i fires in L contributes its max value to
the token at which that max occurred (``token_id`` of the max table). The tokens with the most
mass are the feature's words in L: what a reader looks at first, what the translation-lexicon
check compares across languages, and the labels of the paired figure. Sentencepiece's word
marker is dropped; a subword piece stays a piece (it is what the model's feature saw).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..errors import InputError

WORDS_SCHEMA = {"feature_id": pl.UInt32, "lang": pl.String, "word_rank": pl.UInt32,
                "word": pl.String, "token_id": pl.UInt32, "n": pl.UInt32, "mass": pl.Float64,
                "share": pl.Float64}
_WORD_MARKER = "\u2581"  # sentencepiece's '▁' (start of a word)


def piece_text(piece: str) -> str:
    """A token piece as text: the word marker becomes nothing, surrounding space is dropped."""
    return piece.replace(_WORD_MARKER, " ").strip()


def feature_words(maxacts: pl.DataFrame | pl.LazyFrame, vocab: pl.DataFrame,
                  langs: Sequence[str], top: int = 3, source: str = "max table") -> pl.DataFrame:
    """The ``top`` tokens of each (feature, language) by mass, as ``WORDS_SCHEMA`` rows sorted
    by feature_id, lang (in ``langs`` order), word_rank (0 = most mass; ties by token_id).
    ``share`` is the token's part of the feature's mass in that language."""
    lazy = maxacts.lazy()
    if "token_id" not in lazy.collect_schema().names():
        raise InputError(source, "token_id", "the max table has no token of the max",
                         "rebuild it with this version's reduce (it joins the token tables)")
    order = pl.Enum(list(langs))
    per_token = (lazy.filter(pl.col("lang").is_in(list(langs)))
                 .group_by("feature_id", "lang", "token_id")
                 .agg(n=pl.len(), mass=pl.col("value").cast(pl.Float64).sum()))
    ranked = (per_token
              .with_columns(share=pl.col("mass") / pl.col("mass").sum().over("feature_id", "lang"))
              .sort("feature_id", "lang", pl.col("mass"), "token_id",
                    descending=[False, False, True, False])
              .with_columns(word_rank=pl.int_range(pl.len()).over("feature_id", "lang"))
              .filter(pl.col("word_rank") < top)
              .collect())
    strings = vocab.select(pl.col("token_id").cast(pl.UInt32),
                           word=pl.col("token_str").map_elements(piece_text,
                                                                  return_dtype=pl.String))
    return (ranked.with_columns(pl.col("token_id").cast(pl.UInt32))
            .join(strings, on="token_id", how="left")
            .with_columns(pl.col("word").fill_null(""))
            .select(*WORDS_SCHEMA).cast(WORDS_SCHEMA)
            .sort(pl.col("feature_id"), pl.col("lang").cast(order), pl.col("word_rank")))


def words_by_feature(words: pl.DataFrame, langs: Sequence[str]) -> dict[int, dict[str, list[str]]]:
    """{feature: {lang: [words best first]}} from a ``feature_words`` table."""
    out: dict[int, dict[str, list[str]]] = {}
    for (feature, lang), group in words.group_by("feature_id", "lang", maintain_order=True):
        out.setdefault(int(feature), {l: [] for l in langs})[lang] = group["word"].to_list()
    return out
