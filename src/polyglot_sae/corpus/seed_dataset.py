"""Import the seed blog's published activations as a max-activation table.

The blog's Hugging Face dataset ``diegomezp/gemmascope_bilingual_activations`` holds, per
aligned English-Spanish pair, the GemmaScope SAE activations of both sentences
(``sae_features[lang][token][feature]``, lang 0 = es, 1 = en, BOS at token 0) and their string
tokens (``str_tokens = {"es": [...], "en": [...]}``, BOS included). Turning it into the
project's ``pair_id, lang, feature_id, value`` table lets ``polyglot-sae score --method seed``
rerun the blog's ranking (Table 1) without a GPU or the model.

The max for (pair, lang, feature) is taken over tokens 1 .. len(str_tokens[lang]) - 1: BOS is
skipped, as in every statistic of the blog, and so are the padding positions a row carries when
its two sentences were run as one batch. The published code instead maxes over every position
but 0 of the padded row (``activation_tensor[:, lang, 1:, :]``), so any pad position whose
activation beats the sentence's own max changes that cell; the metadata counts such cells
(``padding_changed_cells``), and ``keep_padding=True`` reproduces the published arithmetic.

Rows are read one at a time as Arrow buffers: the dense dataset is several GB, and only the
sparse table (the positive maxima) is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from jaxtyping import Float

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.errors import InputError
from polyglot_sae.activations.reduce import MAXACTS_SCHEMA

SEED_DATASET = "diegomezp/gemmascope_bilingual_activations"
# Position of each language on the dataset's lang axis, as the blog's code indexes it.
SEED_LANGS = ("es", "en")
_FEATURES = "sae_features"
_TOKENS = "str_tokens"


def import_seed_dataset(
    source: str = SEED_DATASET,
    *,
    split: str = "train",
    local_path: str | Path | None = None,
    keep_padding: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(max-activation table, metadata) from the seed's activation dataset.

    ``local_path``: a ``save_to_disk`` copy (Dataset or DatasetDict) read instead of the hub;
    ``source`` then only labels the provenance. ``keep_padding``: max over all row positions
    but BOS, as the published code does, instead of only the sentence's own tokens.

    The table has ``pair_id`` = row index, ``lang`` in {"es", "en"}, only values > 0, sorted by
    pair_id, lang, feature_id. The metadata has ``n_pairs, d_sae, langs, source`` (what
    ``score_file`` needs) plus ``split``, ``keep_padding`` and ``padding_changed_cells``.
    """
    origin = str(local_path) if local_path is not None else source
    dataset = _load(source, split, local_path)
    if _FEATURES not in dataset.column_names:
        raise InputError(origin, _FEATURES,
                         f"no such column (columns: {sorted(dataset.column_names)})",
                         "point at the seed's activation dataset, whose rows hold "
                         "sae_features[lang][token][feature]")
    has_tokens = _TOKENS in dataset.column_names

    pair_ids, lang_codes, feature_ids, values = [], [], [], []
    d_sae: int | None = None
    padding_changed = 0
    for pair, (features, tokens) in enumerate(_rows(dataset, has_tokens)):
        per_lang = _row_matrices(features, origin, pair)
        lengths = _sentence_lengths(tokens, per_lang, origin, pair)
        for code, (acts, length) in enumerate(zip(per_lang, lengths)):
            if d_sae is None:
                d_sae = acts.shape[1]
            elif acts.shape[1] != d_sae:
                raise InputError(origin, f"{_FEATURES}[{pair}][{code}]",
                                 f"{acts.shape[1]} features per token, earlier rows have {d_sae}",
                                 "every row must come from the same SAE")
            if not np.isfinite(acts).all():
                raise InputError(origin, f"{_FEATURES}[{pair}][{code}]",
                                 "activations are NaN or infinite", "re-export the dataset")
            stop = acts.shape[0] if keep_padding else length
            # Token 0 is BOS, whose activations are huge on every feature and say nothing.
            row_max = acts[1:stop].max(axis=0) if stop > 1 else np.zeros(acts.shape[1])
            if not keep_padding and acts.shape[0] > length:
                pad_max = acts[max(length, 1):].max(axis=0)
                padding_changed += int(((pad_max > row_max) & (pad_max > 0)).sum())
            row_max = row_max.astype(np.float32)
            fired = np.flatnonzero(row_max > 0)
            pair_ids.append(np.full(fired.size, pair, dtype=np.uint32))
            lang_codes.append(np.full(fired.size, code, dtype=np.uint8))
            feature_ids.append(fired.astype(np.uint32))
            values.append(row_max[fired])
    if d_sae is None:
        raise InputError(origin, split, "the dataset has no rows", "check the split and path")

    table = _assemble(pair_ids, lang_codes, feature_ids, values)
    meta = {
        "n_pairs": pair + 1,
        "d_sae": int(d_sae),
        "langs": list(SEED_LANGS),
        "source": source if local_path is None else f"{source} (local copy {local_path})",
        "split": split,
        "keep_padding": keep_padding,
        # Cells whose max a pad position would have raised; 0 means trimming changed nothing.
        "padding_changed_cells": padding_changed if has_tokens and not keep_padding else None,
    }
    return table, meta


def write_seed_maxacts(
    out_path: str | Path,
    source: str = SEED_DATASET,
    *,
    split: str = "train",
    local_path: str | Path | None = None,
    keep_padding: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Import the seed dataset (see ``import_seed_dataset``) and write it, provenance included,
    as a max-activation parquet that ``polyglot-sae score`` reads; returns (table, metadata)."""
    table, meta = import_seed_dataset(source, split=split, local_path=local_path,
                                      keep_padding=keep_padding)
    write_parquet(table, out_path, meta)
    return table, meta


def _load(source: str, split: str, local_path: str | Path | None):
    import datasets

    if local_path is None:
        return datasets.load_dataset(source, split=split)
    loaded = datasets.load_from_disk(str(local_path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise InputError(local_path, "split", f"no split {split!r} (has {sorted(loaded)})",
                             "pass one of the splits it has")
        return loaded[split]
    return loaded


def _rows(dataset, has_tokens: bool) -> Iterator[tuple[pa.Array, Any]]:
    """Each row's activations as an Arrow list<list<float>> per language, and its str_tokens."""
    columns = [_FEATURES, _TOKENS] if has_tokens else [_FEATURES]
    # One row per batch: a row of the real dataset is already ~2 x 100 x 16k floats.
    for batch in dataset.select_columns(columns).with_format("arrow").iter(batch_size=1):
        features = _storage(batch.column(_FEATURES).combine_chunks())
        tokens = batch.column(_TOKENS)[0].as_py() if has_tokens else None
        yield features[0].values, tokens


def _storage(array: pa.Array) -> pa.Array:
    # datasets' ArrayND features are Arrow extension types over plain nested lists.
    return array.storage if isinstance(array, pa.ExtensionArray) else array


def _row_matrices(features: pa.Array | None, origin: str, pair: int) -> list[Float[np.ndarray, "t d"]]:
    """The row's (tokens, features) matrix per language."""
    if features is None or len(features) != len(SEED_LANGS):
        got = 0 if features is None else len(features)
        raise InputError(origin, f"{_FEATURES}[{pair}]",
                         f"{got} languages, expected {len(SEED_LANGS)} ({', '.join(SEED_LANGS)})",
                         "each row must hold the es then the en activations")
    matrices = []
    for code in range(len(SEED_LANGS)):
        tokens = _storage(features[code].values) if features[code].is_valid else None
        if tokens is None or len(tokens) == 0:
            raise InputError(origin, f"{_FEATURES}[{pair}][{code}]", "no tokens",
                             "every sentence needs at least its BOS token")
        widths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        if tokens.null_count or (widths != widths[0]).any():
            raise InputError(origin, f"{_FEATURES}[{pair}][{code}]",
                             "tokens have different numbers of features", "re-export the dataset")
        flat = tokens.flatten().to_numpy(zero_copy_only=False)
        matrices.append(flat.reshape(len(tokens), int(widths[0])))
    return matrices


def _sentence_lengths(tokens: Any, per_lang: list[np.ndarray], origin: str,
                      pair: int) -> list[int]:
    """Positions that belong to each sentence (BOS included); the rest of a row is padding."""
    if tokens is None:  # nothing tells padding apart: use the whole row, as the published code
        return [m.shape[0] for m in per_lang]
    if isinstance(tokens, dict):
        missing = [lang for lang in SEED_LANGS if lang not in tokens]
        if missing:
            raise InputError(origin, f"{_TOKENS}[{pair}]", f"no entry for {missing}",
                             'str_tokens must be {"es": [...], "en": [...]}')
        tokens = [tokens[lang] for lang in SEED_LANGS]
    lengths = [len(t) for t in tokens]
    for code, (length, acts) in enumerate(zip(lengths, per_lang)):
        if length > acts.shape[0]:
            raise InputError(origin, f"{_TOKENS}[{pair}][{SEED_LANGS[code]}]",
                             f"{length} tokens but only {acts.shape[0]} activation rows",
                             "str_tokens and sae_features must come from the same run")
    return lengths


def _assemble(pair_ids, lang_codes, feature_ids, values) -> pl.DataFrame:
    codes = pl.Series(np.concatenate(lang_codes), dtype=pl.UInt8)
    table = pl.DataFrame({
        "pair_id": np.concatenate(pair_ids),
        "lang": codes.replace_strict(list(range(len(SEED_LANGS))), list(SEED_LANGS),
                                     return_dtype=pl.String),
        "feature_id": np.concatenate(feature_ids),
        "value": np.concatenate(values),
    })
    return table.cast(MAXACTS_SCHEMA).sort("pair_id", "lang", "feature_id")
