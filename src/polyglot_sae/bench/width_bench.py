"""Width: every CPU stage and the chunked paths of the GPU-side stages at GemmaScope 2's big
widths (262,144 and 1,048,576 latents), time and peak memory per stage.

    python -m polyglot_sae.bench width --d-sae 262144 --pairs 1500           # the default corpus
    python -m polyglot_sae.bench width --d-sae 262144 --pairs 93470 --inputs /tmp/w93k \
        --rss-cap-gib 9 --stages reduce lexicon    # inputs kept: later runs reuse them
    python -m polyglot_sae.bench width --d-sae 4096 --pairs 60 --lens-vocab 4096   # a smoke run

Synthetic inputs in the pipeline's formats (``width_stages``): extraction shards with L0 fixed
per token, so rows do not grow with d_sae; then each stage in its own child process (same
module, ``--stage``), in pipeline order, each reading the files the previous ones wrote. A
stage's line: wall time of the library call, peak RSS during it (sampled every 10 ms) and the
RSS before it (imports, and for the GPU-side stages the weights they are handed). The GPU-side
stages run their chunked paths on the CPU: extraction and SAE evaluation on a 2-layer random
model of Gemma-3-270M's width (640) with a JumpReLU SAE of full width; the logit lens on the
full d_sae with a ``--lens-vocab`` slice of the vocabulary; MCS with ``--mcs-rows`` rows of one
full-width dictionary against another (both held). Their times scale as stated in the note.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..atomic_io import write_text
from .width_stages import CORPUS_STAGES, STAGES, Inputs, prepare, result_line


def _child(args: argparse.Namespace) -> int:
    from .null_bench import _rss, _RssWatch

    if args.encode_block_mib is not None:  # to compare with the one-block encode
        from ..activations import extract

        extract.ENCODE_BLOCK_BYTES = args.encode_block_mib << 20
    if args.lexicon_block_rows is None:
        from ..lexicon.stage import BLOCK_ROWS

        args.lexicon_block_rows = BLOCK_ROWS
    x = Inputs(Path(args.work), args.d_sae, args.pairs)
    if args.stage in ("extract", "sae_eval"):  # the weights the stage is handed: RSS before
        from .width_stages import _sae

        _sae(args.d_sae)
    before = _rss()
    if args.rss_cap_gib:
        _cap(args.stage, args.rss_cap_gib)
    with _RssWatch() as watch:
        t0 = time.perf_counter()
        note = STAGES[args.stage](x, args)
        wall = time.perf_counter() - t0
    print(result_line(args.stage, wall, int(watch.peak), before, note), flush=True)
    return 0


def _cap(stage: str, gib: float) -> None:
    """Stop this stage once its resident memory passes ``gib``: a stage that would outgrow
    the target must not push a shared machine into swap or the OOM killer, and the line it
    leaves says how far it got."""
    from .null_bench import _rss

    t0 = time.perf_counter()

    def watch() -> None:
        while True:
            time.sleep(0.01)
            if (rss := _rss()) > gib * 2**30:
                print(result_line(stage, time.perf_counter() - t0, rss, 0,
                                  f"STOPPED: over the {gib} GiB cap"), flush=True)
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-sae", type=int, default=262_144)
    parser.add_argument("--pairs", type=int, default=1500, help="scored pairs (default config)")
    parser.add_argument("--shard-pairs", type=int, default=None,
                        help="pairs per shard (default: 375 up to 1,500 pairs, else 6,000)")
    parser.add_argument("--l0", type=int, default=60)
    parser.add_argument("--tokens", type=int, default=40, help="tokens per sentence")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--extract-pairs", type=int, default=160)
    parser.add_argument("--eval-pairs", type=int, default=60, help="sae_eval (default config)")
    parser.add_argument("--lens-vocab", type=int, default=16_384)
    parser.add_argument("--mcs-rows", type=int, default=4096)
    parser.add_argument("--lexicon-block-rows", type=int, default=None,
                        help="lexicon: max-table rows per block (default: the library's; a "
                             "huge value is the one-pass check)")
    parser.add_argument("--encode-block-mib", type=int, default=None,
                        help="extract/sae_eval: dense encoder block (default: the library's)")
    parser.add_argument("--rss-cap-gib", type=float, default=None,
                        help="stop a stage whose resident memory passes this (shared machines)")
    parser.add_argument("--tmp", default=None, help="where the inputs go")
    parser.add_argument("--inputs", default=None,
                        help="a folder kept between runs: inputs built once (93k pairs take "
                             "long), stage outputs left there for the next run's stages")
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser


def _forward(args: argparse.Namespace) -> list[str]:
    skip = {"stages", "stage", "work", "tmp", "inputs"}
    out = []
    for key, value in vars(args).items():
        if key not in skip and value is not None:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def _inputs(args: argparse.Namespace, work: Path) -> None:
    """Build the shared inputs unless ``work`` holds them for these settings already (a
    kept ``--inputs`` folder: the marker is written last, so a cut-off build is redone)."""
    key = {k: getattr(args, k) for k in ("d_sae", "pairs", "shard_pairs", "l0", "tokens")}
    marker = work / "inputs.json"
    if marker.exists() and json.loads(marker.read_text()) == key:
        print(f"inputs: kept in {work}", flush=True)
        return
    t0 = time.perf_counter()
    line = prepare(work, args.d_sae, args.pairs, args.shard_pairs, args.l0, args.tokens)
    print(f"inputs: {line}; built in {time.perf_counter() - t0:.0f} s", flush=True)
    write_text(json.dumps(key), marker)


def _run(args: argparse.Namespace, work: Path) -> int:
    """Each stage in its own child process, in order; the number that failed."""
    if any(s in CORPUS_STAGES for s in args.stages):
        _inputs(args, work)
    failed = 0
    print("stage | d_sae | pairs | time s | peak RSS GiB | RSS before GiB | note", flush=True)
    for stage in args.stages:
        cmd = [sys.executable, "-m", "polyglot_sae.bench.width_bench", "--stage", stage,
               "--work", str(work), *_forward(args)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("WIDTH_RESULT ")]
        failed += proc.returncode != 0
        if not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            print(f"{stage} | {args.d_sae:,} | {args.pairs:,} | FAILED (rc "
                  f"{proc.returncode}) | | | {' / '.join(tail)}", flush=True)
            continue
        r = json.loads(lines[-1].split(" ", 1)[1])
        print(f"{stage} | {args.d_sae:,} | {args.pairs:,} | {r['wall']:.1f} | "
              f"{r['peak'] / 2**30:.2f} | {r['before'] / 2**30:.2f} | {r['note']}", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.stage:
        return _child(args)
    if args.shard_pairs is None:
        args.shard_pairs = 375 if args.pairs <= 1500 else 6000
    with contextlib.ExitStack() as stack:
        if args.inputs:
            work = Path(args.inputs)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(
                tempfile.TemporaryDirectory(dir=args.tmp, prefix="width-")))
        failed = _run(args, work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
