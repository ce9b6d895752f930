"""Synthetic activation shards with GemmaScope-like statistics, for the storage, reduce and
scaling benchmarks: the extraction's exact schema, sort order and Parquet encoding, no model.

Each sentence has ~`tokens` tokens; each token fires ~`l0` distinct features drawn from a
Zipf-like distribution over `d_sae` latents (so a sentence fires a few hundred distinct features
and common features recur across its tokens, as real SAEs do); values are gamma-distributed
float32 with a per-feature scale, full mantissa, like JumpReLU outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..atomic_io import write_parquet
from polyglot_sae.activations.extract import ACTS_SCHEMA

LANGS = ("en", "es")


@dataclass(frozen=True)
class ShardShape:
    """What a synthetic shard looks like."""

    d_sae: int = 16_384  # latents (GemmaScope 16k)
    l0: int = 70  # distinct features per token (GemmaScope L0 ~ 70)
    tokens: int = 30  # tokens per sentence, on average (OPUS Books ~ 30)
    zipf: float = 1.1  # exponent of the feature popularity
    seed: int = 0


def synthetic_shard(first_pair: int, n_pairs: int, shape: ShardShape) -> tuple[pl.DataFrame, int]:
    """(acts table of pairs first_pair .. first_pair + n_pairs - 1 in both languages, tokens)."""
    rng = np.random.default_rng([shape.seed, first_pair])
    popularity = (np.random.default_rng(shape.seed).permutation(shape.d_sae) + 30.0) ** -shape.zipf
    cdf = np.cumsum(popularity / popularity.sum())
    scale = np.random.default_rng(shape.seed + 1).lognormal(0.7, 0.5, shape.d_sae).astype(np.float32)

    n_sent = n_pairs * len(LANGS)
    lengths = np.maximum(1, rng.poisson(shape.tokens, n_sent))
    n_tok = int(lengths.sum())
    # Draw a few extra per token, sort, drop repeats: ~l0 distinct features per token.
    draws = int(shape.l0 * 1.15) + 2
    feats = np.searchsorted(cdf, rng.random((n_tok, draws))).astype(np.uint32)
    feats = np.minimum(feats, shape.d_sae - 1)
    feats.sort(axis=1)
    keep = np.ones_like(feats, dtype=bool)
    keep[:, 1:] = feats[:, 1:] != feats[:, :-1]
    keep &= np.cumsum(keep, axis=1) <= shape.l0
    per_token = keep.sum(axis=1)
    feature = feats[keep]
    del feats, keep

    sentence = np.repeat(np.arange(n_sent), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    token_pos = (np.arange(n_tok) - np.repeat(starts, lengths) + 1).astype(np.uint16)  # BOS is 0
    row_sentence = np.repeat(sentence, per_token)
    value = (rng.gamma(2.0, 1.0, feature.size).astype(np.float32) * scale[feature])
    np.maximum(value, np.float32(1e-3), out=value)
    table = pl.DataFrame({
        "pair_id": (first_pair + row_sentence // len(LANGS)).astype(np.uint32),
        "lang": pl.Series(LANGS).gather(row_sentence % len(LANGS)),
        "token_pos": np.repeat(token_pos, per_token),
        "feature_id": feature,
        "value": value,
    }, schema=ACTS_SCHEMA)
    return table, n_tok


def write_shards(out_dir: str | Path, n_pairs: int, shard_pairs: int,
                 shape: ShardShape) -> tuple[list[Path], int]:
    """Shards of `shard_pairs` pairs covering `n_pairs`, written as `extract` writes them;
    (paths, total tokens)."""
    out_dir = Path(out_dir)
    paths, tokens = [], 0
    for i, first in enumerate(range(0, n_pairs, shard_pairs)):
        count = min(shard_pairs, n_pairs - first)
        table, n_tok = synthetic_shard(first, count, shape)
        paths.append(write_parquet(table, out_dir / f"{i:05d}.parquet",
                                   {"n_pairs": count, "d_sae": shape.d_sae},
                                   byte_stream_split=["value"]))
        tokens += n_tok
    return paths, tokens
