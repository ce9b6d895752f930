"""The paired method's classes and ranking, from the statistics table alone (so changing a
threshold reruns only this step).

Each feature gets the first class whose rule it meets:

    dead             fires on no pair in any language
    lang_specific:L  one language holds >= ``lang_share`` of the activation mass
                     (lang_share_L), which includes firing in L only
    low_support      fewer than ``min_cofire`` pairs where the languages fire together
    shared_string    lex >= ``lex``: most of the co-fired product mass sits on pairs whose max
                     tokens are the same string (a name, a number, a cognate); or, at the word
                     level, lex_word >= ``lex_word`` over at least ``min_cofire_word`` co-fired
                     links: most aligned words it fires on are spelt alike
    length           rho_lo > ``length_min_rho_lo`` and rho_len < ``length_drop`` * rho: a
                     credibly positive correlation that collapses once both sentence lengths
                     are accounted for (the feature tracks sentence length, not content)
    concept          verse level: rho_lo >= ``concept_rho_lo`` and, when the table has a
                     paraphrase ceiling, ratio >= ``concept_ratio``; and, when the table has
                     word-level statistics (``word_level``), word level too: n_cofire_word >=
                     ``min_cofire_word``, r_word_lo >= ``concept_r_word_lo`` and align_lift >=
                     ``concept_lift`` (it fires on the translation of the word it fires on)
    context          the verse-level rule of concept without the word-level one: the feature
                     agrees on which verses, not on which words (dense features, topics,
                     verse positions)
    weak             supported, none of the above

``rank`` (0-based, the recommended ranking) orders the eligible features, those with a class
from shared_string down (n_cofire >= min_cofire, neither dead nor language-specific): concept
features first, then the others, each group by ``min(rho_lo, r_word_lo)`` descending (both
levels must hold; rho_lo alone without word-level statistics), null last, ties by feature_id.
``rank_verse`` is the verse-level ranking alone (verse-level concepts first, by rho_lo): the
ranking before word-level evidence, kept for comparison. Both are null for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import InputError

ELIGIBLE = ("concept", "context", "shared_string", "length", "weak")
WORD_COLUMNS = ("n_cofire_word", "r_word", "r_word_lo", "align_lift", "lex_word")
# The thresholds only the word level reads (the verse-level size sweep leaves them out).
WORD_THRESHOLDS = ("min_cofire_word", "concept_r_word_lo", "concept_lift", "lex_word")


@dataclass(frozen=True)
class ClassConfig:
    """Class thresholds; see the module docstring for the rules."""

    # Co-fired pairs needed to be ranked: below it the bound is too wide to say anything. In
    # simulation (n = 1000 pairs, lognormal maxima with log-correlation 0.8 on co-fired pairs,
    # a few lone firings) the median rho_lo is -0.01 at 3 co-fired pairs (r ~ 0.31), 0.12 at
    # 5 (r ~ 0.50), 0.28 at 10 (r ~ 0.65) and 0.57 at 20 (r ~ 0.78); the share clearing
    # concept_rho_lo (0.2) is 0, 26, 65 and 88%. From 10 a strongly co-varying feature is
    # more often than not distinguishable from 0.2; below it, rank would reflect luck.
    min_cofire: int = 10
    # Share of the activation mass (mean max over pairs) in one language from which a feature
    # is that language's: at 0.9 the other language carries a tenth of the mass, as much as a
    # feature firing equally on 1 pair in 10 there; nu_max is not used because it is in
    # activation units, which differ from feature to feature.
    lang_share: float = 0.9
    # Share of the co-fired product mass on lexical pairs from which a feature is
    # shared_string: a majority means the correlation is carried by shared strings.
    lex: float = 0.5
    # rho given both lengths below this fraction of rho: the correlation is mostly length.
    # Halving leaves room for the part of a content feature's correlation that lengths
    # explain by chance (a few hundredths at n ~ 10^3).
    length_drop: float = 0.5
    # rho_lo above this before a collapse is read as length: an independent feature's rho is
    # noise around 0, and half of noise is as likely as not to exceed rho_len.
    length_min_rho_lo: float = 0.0
    # rho's lower bound from which a feature is a concept. On the default run (Gemma-3-270M,
    # layer 12, 2,048 latents, 1,500 verse pairs) the share of supported features whose top
    # words translate each other (FreeDict) rises with rho_lo up to 0.3 (0.27 below 0.1, 0.45
    # at 0.1-0.2, 0.59 at 0.2-0.3) and is flat above it (0.62-0.72): 0.3 is where the bound
    # stops buying meaning.
    concept_rho_lo: float = 0.3
    # With a paraphrase ceiling, rho / rho_para from which a feature is a concept: a feature
    # that translates no better than 30% of how it tracks a rewording of its own language
    # follows the wording, not the content.
    concept_ratio: float = 0.3
    # The word-level thresholds are fixed from the planted cases and the null, not tuned on
    # the lexicon check that reports them. Co-fired links needed for word-level evidence: the
    # same reasoning as min_cofire (below 10 the bound is mostly luck).
    min_cofire_word: int = 10
    # r_word's lower bound from which a feature agrees at the word level. A feature firing on
    # the same verses but on unrelated words has r_word near 0 (its x and y rarely meet on one
    # link); 0.1 asks that the bound exclude a negligible word-level correlation while
    # keeping features that fire on part of a word's translations (a word has several).
    concept_r_word_lo: float = 0.1
    # align_lift from which a feature fires on the translation and not just in the verse:
    # dense and topic features sit at 0 by construction; 0.2 means the aligned word fires at
    # least 20 points more often than another word of the same verse, a margin no feature
    # spread over a verse reaches (planted topic features: |lift| < 0.05).
    concept_lift: float = 0.2
    # Share of the co-fired links on identical strings from which a feature is shared_string
    # (as lex: a majority).
    lex_word: float = 0.5

    def __post_init__(self) -> None:
        if self.min_cofire < 1:
            raise ValueError(f"min_cofire must be >= 1, got {self.min_cofire}")
        if not 0.5 <= self.lang_share <= 1.0:
            raise ValueError(f"lang_share must be in [0.5, 1], got {self.lang_share}")
        for name in ("lex", "length_drop", "lex_word"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def classify(scores: pl.DataFrame, classes: ClassConfig, langs: Sequence[str]) -> pl.DataFrame:
    """``scores`` (the statistics table of ``paired_stats``, or an already classified one) with
    ``rank:u32`` after ``dead`` and ``class:str`` last, both recomputed."""
    langs = list(langs)
    need = ["feature_id", "dead", "n_cofire", "rho", "rho_lo", "rho_len", "lex", "rho_para",
            "ratio", *(f"lang_share_{lang}" for lang in langs),
            *(f"n_fire_{lang}" for lang in langs)]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise InputError("paired statistics", ", ".join(missing), "missing column(s)",
                         "pass the table paired_stats wrote, with the same langs")
    col = {c: scores[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in need[2:9]}
    words = all(c in scores.columns for c in WORD_COLUMNS)
    word = {c: (scores[c].cast(pl.Float64).fill_null(np.nan).to_numpy() if words
                else np.full(scores.height, np.nan)) for c in WORD_COLUMNS}
    dead = scores["dead"].to_numpy()
    share = np.stack([scores[f"lang_share_{lang}"].fill_null(-1.0).to_numpy() for lang in langs])
    fires = np.stack([scores[f"n_fire_{lang}"].to_numpy() > 0 for lang in langs])
    # NaN compares False, so a missing statistic never grants a class.
    specific = ~dead & ((share.max(axis=0) >= classes.lang_share) | (fires.sum(axis=0) == 1))
    low = ~dead & ~specific & (col["n_cofire"] < classes.min_cofire)
    rest = ~dead & ~specific & ~low
    word_support = word["n_cofire_word"] >= classes.min_cofire_word
    shared = rest & ((col["lex"] >= classes.lex)
                     | (word_support & (word["lex_word"] >= classes.lex_word)))
    rest &= ~shared
    length = rest & (col["rho_lo"] > classes.length_min_rho_lo) & (
        col["rho_len"] < classes.length_drop * col["rho"])
    rest &= ~length
    verse = rest & (col["rho_lo"] >= classes.concept_rho_lo)
    if not np.isnan(col["rho_para"]).all():  # a paraphrase ceiling was computed
        verse &= col["ratio"] >= classes.concept_ratio
    concept = verse & word_support & (word["r_word_lo"] >= classes.concept_r_word_lo) & (
        word["align_lift"] >= classes.concept_lift) if words else verse
    context = verse & ~concept

    label = np.full(scores.height, "weak", dtype=object)
    label[dead] = "dead"
    label[specific] = [f"lang_specific:{langs[i]}" for i in share.argmax(axis=0)[specific]]
    label[low], label[shared], label[length], label[concept], label[context] = (
        "low_support", "shared_string", "length", "concept", "context")

    eligible = np.flatnonzero(rest | shared | length)
    # np.minimum propagates NaN: a missing level leaves the feature unranked by the key
    both = np.minimum(col["rho_lo"], word["r_word_lo"]) if words else col["rho_lo"]
    ids = scores["feature_id"].to_numpy()
    out = scores.drop([c for c in ("rank", "rank_verse", "class") if c in scores.columns])
    out = out.insert_column(out.columns.index("dead") + 1,
                            _nullable_rank(_order(eligible, both, concept, ids), "rank"))
    return out.with_columns(_nullable_rank(_order(eligible, col["rho_lo"], verse, ids),
                                           "rank_verse"),
                            pl.Series("class", label.tolist(), dtype=pl.String))


def _order(eligible: np.ndarray, key: np.ndarray, first: np.ndarray,
           ids: np.ndarray) -> np.ndarray:
    """Ranks (-1 outside ``eligible``): ``first`` features, then the others, each by ``key``
    descending (NaN last), ties by feature id."""
    k = np.where(np.isnan(key), np.inf, -key)[eligible]
    order = eligible[np.lexsort((ids[eligible], k, ~first[eligible]))]
    rank = np.full(ids.size, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank


def _nullable_rank(rank: np.ndarray, name: str) -> pl.Series:
    """u32 ranks with -1 as null."""
    return pl.Series(name, np.where(rank >= 0, rank, 0).astype(np.uint32)).scatter(
        np.flatnonzero(rank < 0), None)
