"""Sparse per-token activations -> the per-(pair, language) max table, streamed with Polars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from .atomic_io import read_metadata

MAXACTS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32,
                  "value": pl.Float32}


def reduce_max(shards: Sequence[str | Path]) -> tuple[pl.DataFrame, dict]:
    """(max table sorted by pair_id, lang, feature_id; provenance with the total pair count).

    Shards hold disjoint pairs, so the group-by never spans files; streaming keeps memory at
    the size of the output, not of the input."""
    shards = [str(s) for s in shards]
    table = (
        pl.scan_parquet(shards)
        .group_by("pair_id", "lang", "feature_id")
        .agg(pl.col("value").max())
        .sort("pair_id", "lang", "feature_id")
        .collect(engine="streaming")
        .cast(MAXACTS_SCHEMA)
    )
    metas = [read_metadata(s) for s in shards]
    meta = {k: v for k, v in metas[0].items() if k not in ("n_pairs", "shard")} if metas else {}
    meta["n_pairs"] = sum(int(m.get("n_pairs", 0)) for m in metas)
    meta["langs"] = metas[0].get("langs") if metas else None
    return table, meta


def n_pairs_of(path: str | Path, table: pl.DataFrame | pl.LazyFrame) -> int:
    """Pairs behind a max table: recorded by `reduce_max`, else the distinct pairs present
    (an undercount when some pair fired no feature at all)."""
    recorded = read_metadata(path).get("n_pairs")
    if recorded:
        return int(recorded)
    return int(table.lazy().select(pl.col("pair_id").n_unique()).collect().item())
