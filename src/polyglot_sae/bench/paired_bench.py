"""Benchmark of the paired method's statistics (bootstrap bound included) on a synthetic
GemmaScope-sized max-activation table.

    python -m polyglot_sae.bench.paired_bench                      # 93,470 pairs x 16,384 features
    python -m polyglot_sae.bench.paired_bench --pairs 300 --features 64   # a smoke run

The table is the null benchmark's (``null_bench.synthetic_maxacts``: ~700 rows per pair and
language, Zipf-like feature frequencies, 5% of the features planted bilingual) plus a
``token_id`` per row, drawn from a per-feature, per-language pool of 16 tokens of a 32k
synthetic vocabulary (so the co-fired rows have many distinct token combinations, as a real
table does), and each sentence's length. It goes through a Parquet file, as the pipeline reads
it, so the peak memory reported is the scorer's own.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from ..atomic_io import write_parquet
from ..paired.stats import PairedConfig, paired_scores
from .null_bench import LANGS, _RssWatch, synthetic_maxacts

_POOL = 16
_VOCAB = 32_768


def synthetic_tokens(table: pl.DataFrame, n_pairs: int, d_sae: int, seed: int = 0
                     ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``table`` with a ``token_id`` column, the sentence lengths and the vocabulary."""
    rng = np.random.default_rng(seed + 1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzáéíóúñ"))
    sizes = rng.integers(2, 11, _VOCAB)
    words = ["".join(rng.choice(letters, s)) for s in sizes]
    vocab = pl.DataFrame({"token_id": np.arange(_VOCAB, dtype=np.uint32),
                          "token_str": [("\u2581" if i % 2 else "") + w
                                        for i, w in enumerate(words)]})
    zipf = 1.0 / np.arange(1, _VOCAB + 1)
    zipf /= zipf.sum()
    pools = rng.choice(_VOCAB, (len(LANGS), d_sae, _POOL), p=zipf).astype(np.uint32)
    lang = table["lang"].to_physical().to_numpy()
    feature = table["feature_id"].to_numpy()
    token = np.empty(table.height, dtype=np.uint32)
    step = 1 << 22
    for lo in range(0, table.height, step):
        hi = min(table.height, lo + step)
        token[lo:hi] = pools[lang[lo:hi], feature[lo:hi], rng.integers(0, _POOL, hi - lo)]
    del lang, feature
    lengths = pl.DataFrame({
        "pair_id": np.tile(np.arange(n_pairs, dtype=np.uint32), len(LANGS)),
        "lang": np.repeat(LANGS, n_pairs),
        "n_tokens": rng.integers(8, 60, len(LANGS) * n_pairs).astype(np.uint32)})
    return table.with_columns(token_id=pl.Series(token)), lengths, vocab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=93_470)
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--bootstrap", type=int, default=PairedConfig.bootstrap)
    parser.add_argument("--mean-active", type=float, default=700.0,
                        help="features firing per (pair, language), on average")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    table, planted = synthetic_maxacts(args.pairs, args.features,
                                       mean_active=min(args.mean_active, 0.5 * args.features),
                                       seed=args.seed)
    table, lengths, vocab = synthetic_tokens(table, args.pairs, args.features, args.seed)
    t1 = time.perf_counter()
    print(f"table: {table.height:,} rows ({table.height / (2 * args.pairs):.0f} per pair and "
          f"language, {table.estimated_size() / 2**30:.2f} GiB), {planted.sum()} planted "
          f"bilingual; built in {t1 - t0:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maxacts.parquet"
        write_parquet(table, path, {"n_pairs": args.pairs, "d_sae": args.features})
        del table
        gc.collect()
        t1 = time.perf_counter()
        with _RssWatch() as watch:
            scores = paired_scores(pl.scan_parquet(path), n_pairs=args.pairs,
                                   d_sae=args.features, langs=LANGS, lengths=lengths,
                                   vocab=vocab, config=PairedConfig(bootstrap=args.bootstrap,
                                                                    seed=args.seed))
        t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"paired_scores (B={args.bootstrap}, from the parquet file): {t2 - t1:.1f} s wall; "
          f"peak RSS {watch.peak / 2**30:.2f} GiB during it, {peak:.2f} GiB for the process "
          f"(getrusage, table generation included)")
    concept = (scores["class"] == "concept").to_numpy()
    print(f"classes: {dict(scores.group_by('class').len().iter_rows())}; concept features "
          f"planted: {(concept & planted).sum()} of {concept.sum()} "
          f"({planted.sum()} planted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
