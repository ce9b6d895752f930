"""Lexicon check of feature rankings: are a feature's top words in two languages translations?

Method. For every feature, take its top words per language (``top_words_from_tokens``: the
tokenizer pieces it fires on, a word being the piece without its leading-space marker, folded,
with at least two letters, ranked by summed activation or by count). A feature is *translated*
when any of its first ``top_n`` words in language a translates any of its first ``top_n`` words
in language b under :meth:`Lexicon.translates <polyglot_sae.lexicon.freedict.Lexicon>` (a
feature with no words in one language is not translated). A ranking of features (best first)
is then scored by precision@k, the share of translated features among its first k, next to the
base rate: the share over all supported features, what a random ranking would score.

Tables. ``top_words``: ``feature_id, lang, word, weight`` (one row per kept word);
``translated_features``: ``feature_id, translated, word_a, word_b, reason``;
``precision_at_k``/``precision_table``: ``method, k, precision, n, base_rate`` (n: features in
the top k, fewer than k when the ranking is shorter; precision is null when n is 0).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from ..errors import InputError
from .freedict import Lexicon, fold, iso3

TOP_WORDS_SCHEMA = {"feature_id": pl.Int64, "lang": pl.String, "word": pl.String,
                    "weight": pl.Float64}
PRECISION_SCHEMA = {"method": pl.String, "k": pl.Int64, "precision": pl.Float64, "n": pl.Int64,
                    "base_rate": pl.Float64}
# SentencePiece (Gemma) and byte-level BPE leading-space markers
_SPACE_MARKERS = ("\u2581", "\u0120")
_SPECIAL = re.compile(r"^<[^<>\s]*>$")  # <bos>, <eos>, <0xC3> byte fallback, <unused12>


@dataclass(frozen=True)
class CheckConfig:
    """How top words are chosen and compared."""

    # words per language compared per feature (the first top_n by weight)
    top_n: int = 3
    # a word fragment (a continuation piece, no leading-space marker) needs at least this many
    # letters after folding: a one-letter fragment is no word. A word-initial piece needs one
    # letter: Spanish "y", "a", "o" are whole words ("and", "to", "or") that the dictionary
    # links; skipping them lost and/y. Digits and punctuation are never words.
    min_letters: int = 2
    # weight of a word: "mass" sums the feature's activations on its pieces, "count" counts the
    # firing occurrences
    weight: Literal["mass", "count"] = "mass"
    # skip continuation pieces (no leading-space marker, e.g. "ijo" of "h|ijo"): they are word
    # fragments, not words; off by default because a fragment can still be a whole word
    word_initial_only: bool = False
    # cut-offs for precision@k
    ks: tuple[int, ...] = (25, 100)

    def __post_init__(self) -> None:
        if self.top_n < 1 or self.min_letters < 0 or any(k < 1 for k in self.ks):
            raise InputError("lexicon check", "config", f"top_n={self.top_n}, min_letters="
                             f"{self.min_letters}, ks={self.ks} out of range",
                             "use top_n >= 1, min_letters >= 0 and every k >= 1")
        if self.weight not in ("mass", "count"):
            raise InputError("lexicon check", "weight", f"unknown weight {self.weight!r}",
                             "use 'mass' or 'count'")


def piece_word(piece: str, config: CheckConfig | None = None) -> str | None:
    """The folded word a tokenizer piece stands for, or None if it is no word.

    ``'▁God' -> 'god'``, ``'▁día' -> 'dia'``, ``'▁y' -> 'y'``, ``'ijo' -> 'ijo'`` (None with
    ``word_initial_only``), ``'▁,'``/``'▁12'``/``'o'``/``'<bos>'``/``'<0xC3>'`` -> None.
    """
    cfg = config or CheckConfig()
    if _SPECIAL.match(piece):
        return None
    initial = piece.startswith(_SPACE_MARKERS)
    if cfg.word_initial_only and not initial:
        return None
    for marker in _SPACE_MARKERS:
        piece = piece.replace(marker, " ")
    word = fold(piece)
    if sum(c.isalpha() for c in word) < (1 if initial else max(cfg.min_letters, 1)):
        return None
    return word


def _require(df: pl.DataFrame, what: str, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(what, "columns", f"missing column(s) {missing} (has {df.columns})",
                         f"pass a table with columns {list(columns)}")


def top_words_from_tokens(acts: pl.DataFrame, tokens: pl.DataFrame | None = None,
                          config: CheckConfig | None = None, *, piece_col: str = "token_str",
                          value_col: str = "value") -> pl.DataFrame:
    """Top words per (feature, language) from per-token activations.

    ``acts`` has ``feature_id, lang, value`` and either the piece (``token_str``) or, with
    ``tokens`` (``pair_id, lang, token_pos, token_str``, the extract stage's token table), the
    join keys ``pair_id, token_pos``. Pieces become words with :func:`piece_word`; a word's
    weight is the summed activation (or the count) over its pieces; the first ``top_n`` per
    (feature, lang) by weight (ties by word) are kept. Returns the ``top_words`` table.
    """
    cfg = config or CheckConfig()
    if tokens is not None:
        _require(tokens, "token table", ("pair_id", "lang", "token_pos", piece_col))
        _require(acts, "activations", ("pair_id", "lang", "token_pos", "feature_id", value_col))
        acts = acts.join(tokens.select("pair_id", "lang", "token_pos", piece_col),
                         on=["pair_id", "lang", "token_pos"], how="inner")
    _require(acts, "activations", ("feature_id", "lang", piece_col, value_col))
    # fold each distinct piece once: the vocabulary is far smaller than the activation table
    pieces = acts.select(pl.col(piece_col).cast(pl.String)).unique().drop_nulls()
    words = pieces.with_columns(word=pl.col(piece_col).map_elements(
        lambda p: piece_word(p, cfg), return_dtype=pl.String))
    weight = pl.col(value_col).cast(pl.Float64).sum() if cfg.weight == "mass" else pl.len()
    out = (acts.select("feature_id", "lang", pl.col(piece_col).cast(pl.String), value_col)
           .join(words, on=piece_col, how="inner").drop_nulls("word")
           .group_by("feature_id", "lang", "word").agg(weight=weight.cast(pl.Float64))
           .sort(["feature_id", "lang", "weight", "word"], descending=[False, False, True, False])
           .group_by("feature_id", "lang", maintain_order=True).head(cfg.top_n))
    return out.select(pl.col("feature_id").cast(pl.Int64), pl.col("lang").cast(pl.String),
                      "word", "weight")


def is_translation(words_a: Sequence[str], words_b: Sequence[str], lexicon: Lexicon,
                   top_n: int = 3) -> bool:
    """Whether any of the first ``top_n`` words of ``words_a`` (lexicon.lang_a) translates any
    of the first ``top_n`` of ``words_b`` (lexicon.lang_b)."""
    return _first_match(words_a[:top_n], words_b[:top_n], lexicon) is not None


def _first_match(words_a: Sequence[str], words_b: Sequence[str],
                 lexicon: Lexicon) -> tuple[str, str, str] | None:
    for wa in words_a:  # best-ranked pair first, so the reported pair is the most telling one
        for wb in words_b:
            reason = lexicon.match(wa, wb)
            if reason is not None:
                return wa, wb, reason
    return None


def translated_features(top_words: pl.DataFrame, lexicon: Lexicon, lang_a: str, lang_b: str,
                        top_n: int = 3) -> pl.DataFrame:
    """Per feature in ``top_words``: ``feature_id, translated, word_a, word_b, reason``.

    ``lang_a``/``lang_b`` are the ``lang`` values of the table (``en``, ``es``); they are
    matched to the lexicon's languages by ISO 639-3 code in either order. Words are taken in
    weight order (ties by word); word_a/word_b/reason describe the first matching pair, null
    when none matched.
    """
    _require(top_words, "top words", ("feature_id", "lang", "word", "weight"))
    a3, b3 = iso3(lang_a), iso3(lang_b)
    if (a3, b3) == (lexicon.lang_b, lexicon.lang_a):
        swapped = translated_features(top_words, lexicon, lang_b, lang_a, top_n)
        return swapped.select("feature_id", "translated", word_a="word_b", word_b="word_a",
                              reason="reason")
    if (a3, b3) != (lexicon.lang_a, lexicon.lang_b):
        raise InputError("lexicon check", "langs", f"{lang_a}-{lang_b} does not fit the "
                         f"{lexicon.lang_a}-{lexicon.lang_b} lexicon",
                         f"load_lexicon({lang_a!r}, {lang_b!r})")
    ranked = (top_words.sort(["feature_id", "lang", "weight", "word"],
                             descending=[False, False, True, False])
              .group_by("feature_id", "lang", maintain_order=True).agg(pl.col("word")))
    words: dict[tuple[int, str], list[str]] = {
        (int(f), str(lang)): list(ws) for f, lang, ws in ranked.iter_rows()}
    rows = []
    for fid in sorted({f for f, _ in words}):
        hit = _first_match(words.get((fid, lang_a), [])[:top_n],
                           words.get((fid, lang_b), [])[:top_n], lexicon)
        rows.append((fid, hit is not None, *(hit or (None, None, None))))
    return pl.DataFrame(rows, orient="row", schema={
        "feature_id": pl.Int64, "translated": pl.Boolean, "word_a": pl.String,
        "word_b": pl.String, "reason": pl.String})


def translated_map(table: pl.DataFrame) -> dict[int, bool]:
    """``translated_features``' table as ``{feature_id: translated}``."""
    return {int(f): bool(t) for f, t in table.select("feature_id", "translated").iter_rows()}


def base_rate(translated: Mapping[int, bool],
              features: Iterable[int] | None = None) -> float | None:
    """Share of translated features among ``features`` (default: every key of ``translated``);
    a feature missing from ``translated`` counts as not translated. None for no features."""
    ids = list(translated) if features is None else list(features)
    return sum(bool(translated.get(f, False)) for f in ids) / len(ids) if ids else None


def precision_at_k(ranking: Sequence[int], translated: Mapping[int, bool],
                   ks: Sequence[int] = (25, 100), *, method: str = "ranking",
                   base_features: Iterable[int] | None = None) -> pl.DataFrame:
    """precision@k of ``ranking`` (feature ids, best first) for each k, with the base rate.

    precision@k = translated features among the first min(k, len(ranking)) ids / that number
    (n); a ranked feature missing from ``translated`` counts as not translated (no top words in
    a language means no translation shown). base_rate is :func:`base_rate` over
    ``base_features`` (default all keys of ``translated``: pass the supported features).
    """
    ids = [int(f) for f in ranking]
    if len(set(ids)) != len(ids):
        dup = sorted(f for f, n in Counter(ids).items() if n > 1)[:5]
        raise InputError(method, "ranking", f"feature ids repeat ({dup})",
                         "pass each feature once, best first")
    if any(int(k) < 1 for k in ks):
        raise InputError(method, "ks", f"k values {list(ks)} must be >= 1", "use ks like (25, 100)")
    base = base_rate(translated, base_features)
    rows = []
    for k in ks:
        top = ids[:int(k)]
        hits = sum(bool(translated.get(f, False)) for f in top)
        rows.append((method, int(k), hits / len(top) if top else None, len(top), base))
    return pl.DataFrame(rows, orient="row", schema=PRECISION_SCHEMA)


def precision_table(rankings: Mapping[str, Sequence[int]], translated: Mapping[int, bool],
                    ks: Sequence[int] = (25, 100),
                    base_features: Iterable[int] | None = None) -> pl.DataFrame:
    """:func:`precision_at_k` for every named ranking (method -> ids), in the mapping's order."""
    base = None if base_features is None else list(base_features)
    frames = [precision_at_k(r, translated, ks, method=m, base_features=base)
              for m, r in rankings.items()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=PRECISION_SCHEMA)
