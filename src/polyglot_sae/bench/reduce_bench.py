"""Reduce at OPUS-Books scale: synthetic shards -> the max-activation table, time and peak memory,
at growing corpus sizes with a fixed shard size (memory must not grow with the corpus).

    python -m polyglot_sae.bench reduce                            # 0.1x and 1x OPUS Books
    python -m polyglot_sae.bench reduce --scales 0.1 --all-at-once # + the one-query reduce

OPUS Books en-es: 93,470 pairs x ~30 tokens x 2 languages, L0 ~70 over 16k latents: ~390
million rows of activations. Each reduce runs in a fresh process, so its peak RSS (getrusage of
the child) is its own; `--all-at-once` also times a single Polars group-by over every shard
(the previous implementation), whose memory grows with the output.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .synthetic_shards import ShardShape, write_shards

OPUS_PAIRS = 93_470

_STREAMED = """
import sys
from polyglot_sae.activations.reduce import write_max_table
rows, meta = write_max_table(sys.argv[2:], sys.argv[1])
print(rows)
"""
_ALL_AT_ONCE = """
import sys
import polars as pl
t = (pl.scan_parquet(sys.argv[2:]).group_by("pair_id", "lang", "feature_id")
     .agg(pl.col("value").max()).sort("pair_id", "lang", "feature_id").collect(engine="streaming"))
t.write_parquet(sys.argv[1])
print(t.height)
"""


def run_child(code: str, out: Path, shards: list[Path]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GiB, rows) of `code` run in a fresh interpreter, which reports
    its own peak (ru_maxrss of RUSAGE_CHILDREN would be the largest child so far)."""
    code += "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(out), *map(str, shards)],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rows, peak_kib = proc.stdout.split()[-2:]
    return wall, int(peak_kib) / 2**20, int(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.1, 1.0],
                        help="corpus sizes as fractions of OPUS Books (93,470 pairs)")
    parser.add_argument("--shard-pairs", type=int, default=6000)
    parser.add_argument("--d-sae", type=int, default=16_384)
    parser.add_argument("--l0", type=int, default=70)
    parser.add_argument("--all-at-once", action="store_true",
                        help="also time one group-by over all shards (memory grows with the corpus)")
    parser.add_argument("--tmp", default=None, help="where to write the shards (needs ~6 GB at 1x)")
    args = parser.parse_args(argv)

    shape = ShardShape(d_sae=args.d_sae, l0=args.l0)
    print("pairs | shards | activation rows | shard files | max-table rows | reduce s | peak RSS GiB"
          + (" | all-at-once s | all-at-once GiB" if args.all_at_once else ""))
    for scale in sorted(args.scales):
        n_pairs = round(OPUS_PAIRS * scale)
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            t0 = time.perf_counter()
            shards, tokens = write_shards(Path(tmp) / "acts", n_pairs, args.shard_pairs, shape)
            gen = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in shards)
            wall, peak, rows = run_child(_STREAMED, Path(tmp) / "maxacts.parquet", shards)
            line = (f"{n_pairs:,} | {len(shards)} | ~{tokens * args.l0 / 1e6:,.0f} M | "
                    f"{size / 2**30:.2f} GiB | {rows:,} | {wall:.1f} | {peak:.2f}")
            if args.all_at_once:
                wall2, peak2, rows2 = run_child(_ALL_AT_ONCE, Path(tmp) / "once.parquet", shards)
                assert rows2 == rows, (rows2, rows)
                line += f" | {wall2:.1f} | {peak2:.2f}"
            print(line + f"   (shards generated in {gen:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
