"""The shared-string control of the paired method: is a co-fired pair's evidence a string the
two languages share (a name, a number, a cognate) rather than a shared concept?

Each row of the max table carries ``token_id``, the token at which the feature's max on that
sentence occurred. A pair k on which both languages fire is *lexical* when the two max tokens

    (i)   are equal once folded: the sentencepiece word mark '▁' and whitespace removed,
          lowercased, NFKD-decomposed with the combining marks dropped (accents folded), or
    (ii)  are near-identical: 1 - lev(a, b) / max(len a, len b) >= ``min_similarity`` (0.75)
          on the folded strings, Levenshtein distance in code points (Moisés/Moses 0.83,
          Jerusalén/Jerusalem 0.89, dios/god 0.25), or
    (iii) both consist only of digits, punctuation and symbols (Unicode categories N*, P*, S*;
          a token that folds to nothing, pure whitespace, counts as such): '12'/'12', ','/'.'.

Rule (i) is (ii) at similarity 1; it is listed because tokens equal by id skip the distance
altogether. Lexical status is a function of the (token_A, token_B) combination only, so it is
decided once per distinct combination over the whole table (a large table has ~10^6 of them):
the co-fired rows' combinations are collected, deduplicated, folded once per token id and
compared by a compiled edit distance; the scorer then looks each co-fired row up by binary
search in the sorted lexical combinations. With three or more languages each language pair
is judged on its own two tokens (the scorer reports the largest lexical share and the
smallest rho_nonlex over language pairs).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
import polars as pl
from jaxtyping import Int32, Int64, UInt32

from ..errors import InputError

# Sentencepiece's word-start mark, which Gemma's pieces carry instead of a leading space.
_WORD_MARK = "\u2581"
_LOW32 = np.int64(0xFFFFFFFF)


@dataclass(frozen=True)
class LexicalConfig:
    """When two max tokens count as the same string; see the module docstring."""

    # Edit similarity (1 - lev / longer length, folded strings) from which two tokens are
    # near-identical: 0.75 admits one edit in a 4-7 letter word and two in 8-11 letters
    # (Moisés/Moses, Jerusalén/Jerusalem, Egipto/Egypt 0.67 no), and no short function word
    # pair (de/the 0.33, el/le 0).
    min_similarity: float = 0.75
    # Count two digit/punctuation/symbol-only tokens as the same string: numbers and
    # punctuation are shared across languages by construction, not translated.
    symbols_match: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in (0, 1], got {self.min_similarity}")


def fold(token: str) -> str:
    """The token as compared: '▁' and whitespace removed, lowercased, accents folded."""
    bare = "".join(ch for ch in token if ch != _WORD_MARK and not ch.isspace())
    decomposed = unicodedata.normalize("NFKD", bare.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def is_symbolic(folded: str) -> bool:
    """Digits, punctuation and symbols only (or nothing left after folding)."""
    return all(unicodedata.category(ch)[0] in "NPS" for ch in folded)


def similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len a, len b) (1 for two empty strings)."""
    ca, cb = _codes(a), _codes(b)
    longer = max(ca.size, cb.size)
    return 1.0 if longer == 0 else 1.0 - _levenshtein(ca, cb) / longer


def is_lexical(a: str, b: str, config: LexicalConfig = LexicalConfig()) -> bool:
    """Whether two max tokens (raw vocabulary pieces) are the same string by rules (i)-(iii)."""
    fa, fb = fold(a), fold(b)
    if fa == fb or (config.symbols_match and is_symbolic(fa) and is_symbolic(fb)):
        return True
    return similarity(fa, fb) >= config.min_similarity


def vocab_lookup(vocab: Mapping[int, str] | pl.DataFrame) -> Mapping[int, str]:
    """The vocabulary as token_id -> string; a table has columns ``token_id`` and ``token_str``
    (the reducer's vocab file) or ``token``."""
    if isinstance(vocab, pl.DataFrame):
        text = next((c for c in ("token_str", "token") if c in vocab.columns), None)
        if "token_id" not in vocab.columns or text is None:
            raise InputError("vocab", ", ".join(vocab.columns), "no token_id/token_str columns",
                             "pass the reducer's vocab table (token_id, token_str)")
        return dict(zip(vocab["token_id"].to_list(), vocab[text].to_list()))
    return vocab


def lexical_keys(keys: Int64[np.ndarray, " m"], vocab: Mapping[int, str] | pl.DataFrame,
                 config: LexicalConfig) -> Int64[np.ndarray, " l"]:
    """Of the distinct token combinations ``keys`` (token_A << 32 | token_B, sorted, unique),
    the lexical ones, sorted. Combinations of one token with itself need not be passed: they
    are lexical by rule (i)."""
    if keys.size == 0:
        return keys
    ids = np.unique(np.concatenate([keys >> 32, keys & _LOW32]))
    lookup = vocab_lookup(vocab)
    missing = [int(i) for i in ids if int(i) not in lookup]
    if missing:
        raise InputError("vocab", "token_id", f"{len(missing)} token ids of the max table have "
                         f"no string (e.g. {missing[:5]})",
                         "pass the vocab written with this max table")
    folded = [fold(lookup[int(i)]) for i in ids]
    codes = np.array([ord(ch) for s in folded for ch in s], dtype=np.int32)
    offset = np.zeros(ids.size + 1, dtype=np.int64)
    offset[1:] = np.cumsum([len(s) for s in folded])
    symbolic = np.array([config.symbols_match and is_symbolic(s) for s in folded], dtype=bool)
    ia = np.searchsorted(ids, keys >> 32)
    ib = np.searchsorted(ids, keys & _LOW32)
    flags = _lexical_kernel(ia, ib, codes, offset, symbolic, config.min_similarity)
    return keys[flags]


def cofired_keys(start_a: Int64[np.ndarray, " d1"], start_b: Int64[np.ndarray, " d1"],
                 slot: Int32[np.ndarray, " n"], token: UInt32[np.ndarray, " n"]
                 ) -> Int64[np.ndarray, " m"]:
    """The distinct (token_A << 32 | token_B) of the rows where both languages fire, sorted,
    without the combinations of a token with itself. Language A's rows of feature f are
    ``start_a[f]:start_a[f + 1]`` of ``slot`` and ``token`` (B's likewise), ordered by pair
    slot."""
    counts = _cofired(start_a, start_b, slot, token, np.empty(0, np.int64),
                      np.zeros(0, np.int64), False)
    offset = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offset[1:])
    keys = np.empty(int(offset[-1]), dtype=np.int64)
    distinct = _cofired(start_a, start_b, slot, token, keys, offset, True)
    # Each feature's distinct keys lead its block: keep those before the global sort.
    first = np.repeat(offset[:-1] - np.cumsum(distinct) + distinct, distinct)
    return np.unique(keys[first + np.arange(first.size)])


@numba.njit(parallel=True, cache=True, nogil=True)
def _cofired(start_a, start_b, slot, token, keys, offset, fill):  # pragma: no cover - compiled
    """Per feature, the co-fired rows with two different tokens: counted, or (``fill``) their
    keys written at ``offset[f]``, sorted and deduplicated within the feature, the distinct
    ones first, and counted (a feature repeats its few combinations: this shrinks the
    global sort)."""
    d = start_a.size - 1
    counts = np.zeros(d, dtype=np.int64)
    for f in numba.prange(d):
        i, j, n = start_a[f], start_b[f], 0
        at = offset[f] if fill else 0
        while i < start_a[f + 1] and j < start_b[f + 1]:
            if slot[i] < slot[j]:
                i += 1
            elif slot[i] > slot[j]:
                j += 1
            else:
                if token[i] != token[j]:
                    if fill:
                        keys[at + n] = (np.int64(token[i]) << 32) | np.int64(token[j])
                    n += 1
                i += 1
                j += 1
        if fill and n > 1:
            part = keys[at : at + n]
            part.sort()
            m = 1
            for r in range(1, n):
                if part[r] != part[m - 1]:
                    part[m] = part[r]
                    m += 1
            n = m
        counts[f] = n
    return counts


def _codes(s: str) -> Int32[np.ndarray, " n"]:
    return np.array([ord(ch) for ch in s], dtype=np.int32)


@numba.njit(cache=True, nogil=True)
def _levenshtein(a, b):  # pragma: no cover - compiled
    """Edit distance of two code-point arrays (insertions, deletions, substitutions), two rows."""
    if a.size < b.size:
        a, b = b, a
    prev = np.arange(b.size + 1)
    cur = np.empty(b.size + 1, dtype=prev.dtype)
    for i in range(1, a.size + 1):
        cur[0] = i
        for j in range(1, b.size + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        prev, cur = cur, prev
    return prev[b.size]


@numba.njit(parallel=True, cache=True, nogil=True)
def _lexical_kernel(ia, ib, codes, offset, symbolic, min_similarity):  # pragma: no cover
    """Per combination (indices into the folded strings): lexical by rule (ii) or (iii)."""
    out = np.zeros(ia.size, dtype=np.bool_)
    for k in numba.prange(ia.size):
        x, y = ia[k], ib[k]
        if symbolic[x] and symbolic[y]:
            out[k] = True
            continue
        a, b = codes[offset[x] : offset[x + 1]], codes[offset[y] : offset[y + 1]]
        longer = max(a.size, b.size)
        if longer == 0:
            out[k] = True
            continue
        # lev >= the length difference: most combinations fail on lengths alone.
        budget = (1.0 - min_similarity) * longer + 1e-9
        if abs(a.size - b.size) > budget:
            continue
        out[k] = _levenshtein(a, b) <= budget
    return out
