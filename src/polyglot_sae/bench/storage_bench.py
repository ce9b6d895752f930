"""Bytes per token of the sparse activation shards against dense float32 SAE activations.

    python -m polyglot_sae.bench storage                     # GemmaScope-like: 16k latents, L0 70
    python -m polyglot_sae.bench storage --shards 'results/default/acts/*/*.parquet'

A synthetic shard (the extraction's schema, sort order and encoding: zstd, dictionaries,
byte-stream-split values) is written, read back and compared value for value with what was
written (lossless for the values kept), and its size set against d_sae x 4 bytes per token.
`--shards` measures real shards too (tokens counted from the shard's own rows).
"""

from __future__ import annotations

import argparse
import glob
import sys
import tempfile
from pathlib import Path

import polars as pl

from ..atomic_io import read_metadata
from .synthetic_shards import ShardShape, synthetic_shard, write_shards


def report(name: str, size: int, tokens: int, rows: int, d_sae: int) -> None:
    per_token = size / tokens
    dense = 4 * d_sae
    print(f"{name}: {tokens:,} tokens, {rows:,} rows (L0 {rows / tokens:.1f}), d_sae {d_sae:,}: "
          f"{per_token:.1f} B/token sparse vs {dense:,} B/token dense float32 -> "
          f"{dense / per_token:.0f}x smaller ({per_token / (rows / tokens):.2f} B per kept value)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs in the synthetic shard")
    parser.add_argument("--d-sae", type=int, default=16_384)
    parser.add_argument("--l0", type=int, default=70)
    parser.add_argument("--shards", help="glob of real activation shards to measure as well")
    args = parser.parse_args(argv)

    shape = ShardShape(d_sae=args.d_sae, l0=args.l0)
    with tempfile.TemporaryDirectory() as tmp:
        (path,), tokens = write_shards(tmp, args.pairs, args.pairs, shape)
        written, _ = synthetic_shard(0, args.pairs, shape)
        back = pl.read_parquet(path)
        assert back.equals(written), "the shard did not read back identically"
        report(f"synthetic ({args.pairs:,} pairs; read back bit-identical)", path.stat().st_size,
               tokens, back.height, args.d_sae)
    if args.shards:
        paths = sorted(glob.glob(args.shards))
        if not paths:
            print(f"no files match {args.shards}", file=sys.stderr)
            return 1
        size = sum(Path(p).stat().st_size for p in paths)
        tokens_glob = [p.replace("/acts/", "/tokens/") for p in paths]
        excluded = set(read_metadata(paths[0]).get("excluded_tokens", []))
        tokens = (pl.scan_parquet(tokens_glob)
                  .filter(~pl.col("token_id").is_in(list(excluded)))
                  .select(pl.len()).collect().item())
        rows = pl.scan_parquet(paths).select(pl.len()).collect().item()
        d_sae = int(read_metadata(paths[0]).get("d_sae", 0))
        report(f"{len(paths)} real shards ({args.shards})", size, tokens, rows, d_sae)
    return 0


if __name__ == "__main__":
    sys.exit(main())
