"""Time of each stage after extraction against the number of pairs and the SAE width, so a
cluster run can be planned; plus the SAE encoder's share of an extraction.

    python -m polyglot_sae.bench scaling                      # pairs 2k, 8k x d_sae 4k, 16k
    python -m polyglot_sae.bench scaling --pairs 1000 4000 --d-sae 2048

Per configuration: synthetic GemmaScope-like shards (L0 70, ~30 tokens per sentence, written
as `extract` writes them), `reduce` (streamed), `score` (exact method, no null) and `score` with
the permutation null (`--permutations`, default 100; the time of a 1,000-permutation run is
about 10x the null part for the significant features, less for the rest thanks to early
stopping). The extraction itself is model-bound: its tokens/s come from
`python -m polyglot_sae.bench extract`; the SAE encoder it adds is timed here per d_sae.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from polyglot_sae.score.null import NullConfig
from polyglot_sae.activations.reduce import write_max_table
from polyglot_sae.score.bilingual import ScoreConfig
from polyglot_sae.score.files import score_file
from .synthetic_shards import LANGS, ShardShape, write_shards


def encoder_us_per_token(d_model: int, d_sae: int, tokens: int = 4096) -> float:
    """Microseconds per token of a JumpReLU encode (matmul, bias, threshold) in float32 here."""
    torch.manual_seed(0)
    x = torch.randn(tokens, d_model)
    w, b, theta = torch.randn(d_model, d_sae) / d_model**0.5, torch.zeros(d_sae), torch.ones(d_sae)
    with torch.inference_mode():
        pre = x @ w + b  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            pre = x @ w + b
            _ = pre * (pre > theta)
        return (time.perf_counter() - t0) / 3 / tokens * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--d-sae", type=int, nargs="+", default=[4096, 16_384])
    parser.add_argument("--shard-pairs", type=int, default=2000)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--d-model", type=int, default=640, help="for the encoder timing (640: Gemma-3-270M, 2304: Gemma-2-2B)")
    parser.add_argument("--encoder-d-sae", type=int, nargs="+", default=[2048, 65_536],
                        help="widths timed in the encoder, besides --d-sae (smaller for smoke runs)")
    args = parser.parse_args(argv)

    print("pairs | d_sae | activation rows | reduce s | score s | score + null s "
          f"({args.permutations} permutations)")
    for d_sae in args.d_sae:
        for n_pairs in args.pairs:
            shape = ShardShape(d_sae=d_sae)
            with tempfile.TemporaryDirectory() as tmp:
                shards, tokens = write_shards(Path(tmp) / "acts", n_pairs, args.shard_pairs, shape)
                maxacts = Path(tmp) / "maxacts.parquet"
                t0 = time.perf_counter()
                write_max_table(shards, maxacts)
                t1 = time.perf_counter()
                score_file(maxacts, Path(tmp) / "s.parquet", langs=LANGS, d_sae=d_sae,
                           config=ScoreConfig(method="exact"))
                t2 = time.perf_counter()
                score_file(maxacts, Path(tmp) / "n.parquet", langs=LANGS, d_sae=d_sae,
                           config=ScoreConfig(method="exact"),
                           null=NullConfig(permutations=args.permutations, seed=0))
                t3 = time.perf_counter()
            print(f"{n_pairs:,} | {d_sae:,} | ~{tokens * shape.l0 / 1e6:.0f} M | {t1 - t0:.1f} | "
                  f"{t2 - t1:.1f} | {t3 - t2:.1f}", flush=True)
    print(f"\nSAE encoder, float32 on this CPU, d_model {args.d_model}:")
    for d_sae in sorted(set(args.d_sae) | set(args.encoder_d_sae)):
        print(f"  d_sae {d_sae:>6,}: {encoder_us_per_token(args.d_model, d_sae):.1f} us/token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
