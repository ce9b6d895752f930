"""Words of a sentence, and which words each model token covers.

Segmentation (the aligner's words and the word-level statistics' words are the same ones):

* a word is a run of Unicode word characters (``\\w``: letters, digits, underscore, the
  combining marks of decomposed accents), apostrophes inside a word kept (``LORD's``,
  ``l'eau`` stay one word: the Bible's possessives are one word to the reader and to the
  dictionary); every other non-space character is a word of its own (punctuation, symbols);
* scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer,
  Myanmar) fall back to one word per character: there is no word boundary to find without a
  language-specific segmenter, and a character is the unit such an aligner can still link
  (pre-segment the text with spaces to get real words; the characters of a spaced text are
  then grouped as usual);
* the aligner sees the words lowercased (``str.lower``); spans always index the original text.

Token to word: the model tokenizer's character offsets (``tokenizers``' ``offsets``; a
SentencePiece ``▁`` piece includes the space before its word, byte-fallback pieces carry the
offsets of the character they encode, special tokens have empty offsets). A token belongs to
every word its offsets overlap (after its leading whitespace), usually one; special and
whitespace-only tokens belong to none.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from jaxtyping import Int32, Int64

_NO_SPACE = ("\u0e00-\u0eff"  # Thai, Lao
             "\u1000-\u109f"  # Myanmar
             "\u1780-\u17ff"  # Khmer
             "\u3040-\u30ff"  # Hiragana, Katakana
             "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff")  # Han
_WORD = re.compile(rf"[{_NO_SPACE}]|(?:(?![{_NO_SPACE}])\w)+(?:['’](?:(?![{_NO_SPACE}])\w)+)*"
                   r"|[^\w\s]")


def words(text: str) -> tuple[list[str], Int64[np.ndarray, "n 2"]]:
    """The words of ``text`` (module docstring) and their ``[start, end)`` character spans."""
    found = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
    spans = np.array([(s, e) for _, s, e in found], dtype=np.int64).reshape(-1, 2)
    return [w for w, _, _ in found], spans


def fold_word(word: str) -> str:
    """The folded form two words are compared in for the shared-string share: NFKD with
    combining marks dropped, casefolded (``Jehová -> jehova``, ``David -> david``)."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def token_words(spans: Int64[np.ndarray, "n 2"], offsets: Int64[np.ndarray, "t 2"],
                text: str) -> tuple[Int32[np.ndarray, " m"], Int32[np.ndarray, " m"]]:
    """(token index, word index) pairs: token t covers word w when the token's offsets, with
    leading whitespace skipped, overlap the word's span. Tokens with empty offsets (specials)
    cover nothing."""
    tok, word = [], []
    if spans.shape[0] == 0:
        return np.empty(0, np.int32), np.empty(0, np.int32)
    starts, ends = spans[:, 0], spans[:, 1]
    for t, (s, e) in enumerate(offsets.tolist()):
        while s < e and text[s].isspace():
            s += 1
        if s >= e:
            continue
        lo = int(np.searchsorted(ends, s, side="right"))  # first word ending after s
        hi = int(np.searchsorted(starts, e, side="left"))  # words starting before e
        for w in range(lo, hi):
            tok.append(t)
            word.append(w)
    return np.array(tok, np.int32), np.array(word, np.int32)
