"""Model tokens -> words, through the tokenizer's character offsets, checked against the tokens
the extraction saw.

The text of every sentence is re-tokenized (``tokenizers``, the model folder's
``tokenizer.json``, no special tokens) with offsets; the extraction's token table
(``pair_id, lang, token_pos, token_id``, BOS at position 0, cut at ``extract.max_tokens``)
must hold the same ids after its leading special token(s): a sentence whose text no longer
gives the extracted tokens (a changed corpus, another tokenizer) is refused with its pair id,
since its activations would be put on the wrong words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from .segment import token_words, words

TOKMAP_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
                 "word": pl.UInt16}


def load_tokenizer(model_dir: str | Path):
    """The fast tokenizer of a model folder (``tokenizer.json``), without transformers."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.exists():
        raise InputError(model_dir, "tokenizer.json", "missing: word-level statistics need a "
                         "fast tokenizer's character offsets",
                         "save the model folder with a fast tokenizer (save_pretrained)")
    return Tokenizer.from_file(str(path))


def words_of_tokens(texts: pl.DataFrame, tokens: pl.DataFrame, tokenizer,
                    source: str = "token table") -> pl.DataFrame:
    """``TOKMAP_SCHEMA`` rows: which word(s) of its sentence each extracted token covers.

    ``texts``: ``pair_id, lang, text``; ``tokens``: the extraction's ``pair_id, lang,
    token_pos, token_id`` for those sentences.
    """
    seqs = (tokens.sort("pair_id", "lang", "token_pos")
            .group_by("pair_id", "lang", maintain_order=True)
            .agg(pl.col("token_id"), pl.col("token_pos")))
    joined = seqs.join(texts.select("pair_id", pl.col("lang").cast(pl.String), "text"),
                       on=["pair_id", "lang"], how="left")
    if joined["text"].null_count():
        bad = joined.filter(pl.col("text").is_null()).row(0, named=True)
        raise InputError(source, "pair_id", f"pair {bad['pair_id']} ({bad['lang']}) has tokens "
                         "but no text in the pairs table", "rebuild the extraction tables")
    encodings = tokenizer.encode_batch(joined["text"].to_list(), add_special_tokens=False)
    out_pair, out_lang, out_pos, out_word = [], [], [], []
    for (pair, lang, ids, pos, text), enc in zip(joined.iter_rows(), encodings):
        shift = _shift(ids, enc.ids)
        if shift is None:
            raise InputError(source, "token_id", f"pair {pair} ({lang}): the text's tokens "
                             f"{enc.ids[:8]}... differ from the extracted {ids[:9]}...",
                             "rerun the extraction for this corpus and model")
        spans = words(text)[1]
        n = min(len(enc.ids), len(ids) - shift)
        tok, word = token_words(spans, np.asarray(enc.offsets[:n], dtype=np.int64).reshape(-1, 2),
                                text)
        out_pos.append(np.asarray(pos, dtype=np.int64)[tok + shift])
        out_word.append(word)
        out_pair.append(np.full(tok.size, pair, np.int64))
        out_lang.extend([lang] * tok.size)
    cat = (lambda parts: np.concatenate(parts) if parts else np.empty(0, np.int64))
    return pl.DataFrame({"pair_id": cat(out_pair), "lang": out_lang, "token_pos": cat(out_pos),
                         "word": cat(out_word)}, schema=TOKMAP_SCHEMA)


def _shift(extracted: list[int], text_ids: list[int]) -> int | None:
    """Leading special tokens of the extracted sequence (BOS: 1), or None when the sequences
    do not agree (the extracted one may be cut short and end with one special token)."""
    for exact in (True, False):  # a full-length match first: repeated ids could fake a shift
        for shift in (1, 0, 2):
            body = extracted[shift:]
            n = min(len(body), len(text_ids))
            if body[:n] != text_ids[:n] or len(body) - n > 1:
                continue
            if (len(body) == len(text_ids)) if exact else (n == len(text_ids) or len(body) == n):
                return shift
    return None
