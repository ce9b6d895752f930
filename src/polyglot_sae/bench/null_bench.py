"""Benchmark of the permutation null on a synthetic GemmaScope-sized max-activation table.

    python -m polyglot_sae.bench.null_bench                  # 93,470 pairs x 16,384 features
    python -m polyglot_sae.bench.null_bench --pairs 5000 --permutations 200   # a quick run

The table mimics a 16k-latent SAE read at sentence level: a sentence of ~30 tokens with L0 ~70
per token fires roughly 400-1000 distinct features, so each (pair, language) gets ~700 rows.
Feature frequencies are Zipf-like (a few hundred features fire on most pairs, most on a few
hundred), magnitudes gamma-distributed with a per-feature scale, and a fraction of the features
are planted bilingual: the second language fires on most of the first's pairs with correlated
magnitudes. Every other feature is drawn independently per language, so it is null.

Prints wall time and peak RSS (``resource.getrusage``) per stage, the number of features at
q < 0.05 and how many of them were planted.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
from jaxtyping import Bool

from ..atomic_io import write_parquet
from polyglot_sae.score.null import NullConfig
from polyglot_sae.score.bilingual import ScoreConfig
from polyglot_sae.score.files import score_file

LANGS = ("en", "es")


def synthetic_maxacts(
    n_pairs: int, d_sae: int, *, mean_active: float = 700.0, bilingual: float = 0.05,
    zipf: float = 1.1, seed: int = 0,
) -> tuple[pl.DataFrame, Bool[np.ndarray, " d_sae"]]:
    """A max-activation table (``pair_id:u32, lang:enum, feature_id:u32, value:f32``, sorted by
    lang then feature) and which features were planted bilingual."""
    rng = np.random.default_rng(seed)
    # Zipf-like firing probability per pair, scaled so a (pair, language) averages mean_active
    # features; the rank is shuffled so feature ids carry no frequency information.
    rank = rng.permutation(d_sae)
    shape = (rank + 30.0) ** -zipf
    lo, hi = 0.0, 1e12
    for _ in range(200):  # bisection on the scale: the cap at 0.95 makes it nonlinear
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.minimum(0.95, mid * shape).sum() < mean_active else (lo, mid)
    density = np.minimum(0.95, lo * shape)
    planted = rng.random(d_sae) < bilingual
    # Per-language jitter: a null feature can be commoner in one language.
    dens = np.minimum(0.95, density * rng.lognormal(0.0, 0.25, (2, d_sae)))
    scale = rng.lognormal(0.7, 0.5, (2, d_sae))

    first = [_choose(rng, n_pairs, p) for p in dens[0]]
    second = []
    for f in range(d_sae):
        if planted[f]:
            shared = first[f][rng.random(first[f].size) < 0.85]
            second.append(np.union1d(shared, _choose(rng, n_pairs, 0.1 * dens[0, f])))
        else:
            second.append(_choose(rng, n_pairs, dens[1, f]))

    # Built column by column into final dtypes (int32 pair lists, float32 values drawn in
    # chunks): the table is ~1.7 GB at full size and the benchmark measures the scorer's peak.
    frames = []
    for lang, pairs, lang_scale in zip(LANGS, (first, second), scale):
        counts = np.array([p.size for p in pairs])
        pair_id = np.concatenate(pairs).view(np.uint32)
        pairs.clear()
        feature = np.repeat(np.arange(d_sae, dtype=np.uint32), counts)
        value = np.empty(feature.size, dtype=np.float32)
        for lo in range(0, feature.size, 1 << 22):
            part = feature[lo : lo + (1 << 22)]
            value[lo : lo + part.size] = rng.gamma(2.0, lang_scale[part])
        frames.append((lang, pair_id, feature, value))
    # Planted features: the second language's value on a shared pair is the first's times noise.
    (_, p0, f0, v0), (_, p1, f1, v1) = frames
    rows0, rows1 = np.flatnonzero(planted[f0]), np.flatnonzero(planted[f1])
    key0 = f0[rows0].astype(np.int64) << 32 | p0[rows0]
    key1 = f1[rows1].astype(np.int64) << 32 | p1[rows1]
    at = np.minimum(np.searchsorted(key0, key1), key0.size - 1)
    shared = key0[at] == key1
    v1[rows1[shared]] = v0[rows0[at[shared]]] * rng.lognormal(0.0, 0.3, shared.sum())
    for v in (v0, v1):  # max activations are > 0 by construction of the table
        np.maximum(v, np.float32(1e-3), out=v)

    lang_type = pl.Enum(LANGS)
    table = pl.concat(
        [
            pl.DataFrame({"pair_id": p, "feature_id": f, "value": v}).select(
                "pair_id", pl.lit(lang, dtype=lang_type).alias("lang"), "feature_id", "value")
            for lang, p, f, v in frames
        ],
        rechunk=False,
    )
    return table, planted


def _choose(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Sorted pairs (int32) on which a feature with firing probability p fires."""
    k = rng.binomial(n, p)
    return np.sort(rng.choice(n, k, replace=False)).astype(np.int32)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _rss() -> int:
    """The resident memory of this process now, bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssWatch:
    """Peak resident memory over a stretch of the run, sampled every 10 ms (ru_maxrss only
    ever grows, so it cannot tell the scorer's peak from the table generator's)."""

    def __init__(self) -> None:
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=93_470)
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--early-stop-hits", type=int, default=10)
    parser.add_argument("--method", choices=["exact", "seed"], default="exact")
    parser.add_argument("--mean-active", type=float, default=700.0,
                        help="features firing per (pair, language), on average")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    table, planted = synthetic_maxacts(args.pairs, args.features, mean_active=args.mean_active,
                                       seed=args.seed)
    t1 = time.perf_counter()
    print(f"table: {table.height:,} rows ({table.height / (2 * args.pairs):.0f} per pair and "
          f"language, {table.estimated_size() / 2**30:.2f} GiB), {planted.sum()} planted "
          f"bilingual; built in {t1 - t0:.1f} s, peak RSS so far {_peak_gib():.2f} GiB",
          flush=True)

    # Through the file, as `polyglot-sae score --permutations` runs: the generator's table is
    # gone before the scorer starts, so the peak below is the scorer's own.
    with tempfile.TemporaryDirectory() as tmp:
        maxacts = Path(tmp) / "maxacts.parquet"
        write_parquet(table, maxacts, {"n_pairs": args.pairs, "d_sae": args.features})
        del table
        gc.collect()
        t1 = time.perf_counter()
        with _RssWatch() as watch:
            scores = score_file(
                maxacts, Path(tmp) / "scores.parquet", langs=LANGS, d_sae=args.features,
                config=ScoreConfig(method=args.method),
                null=NullConfig(permutations=args.permutations, seed=args.seed,
                                early_stop_hits=args.early_stop_hits),
            )
    t2 = time.perf_counter()
    print(f"score + null ({args.permutations} permutations, h={args.early_stop_hits}, "
          f"{args.method}, from the parquet file): {t2 - t1:.1f} s wall; peak RSS "
          f"{watch.peak / 2**30:.2f} GiB during it, {_peak_gib():.2f} GiB for the process "
          f"(getrusage, table generation included)")
    found = (scores["q_value"] < 0.05).fill_null(False).to_numpy()
    print(f"{found.sum()} features bilingual at q < 0.05 ({(found & planted).sum()} of "
          f"{planted.sum()} planted; {(found & ~planted).sum()} not planted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
