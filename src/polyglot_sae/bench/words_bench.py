"""Benchmark of the word level: eflomal's alignment and the word-level statistics on a synthetic
parallel corpus of OPUS-Books size.

    python -m polyglot_sae.bench.words_bench                     # 93,470 pairs x 16,384 features
    python -m polyglot_sae.bench.words_bench --pairs 300 --features 64 --l0 8   # a smoke run

The corpus: sentences of 8-40 words (mean ~24, a Bible verse's length) drawn from a Zipf-like
20k-word vocabulary, the other language a word-by-word image through a fixed random bijection
with local reordering, so the aligner has the real amount of text to fit. The statistics' input
is synthetic extraction shards at ``--shard-pairs`` pairs each (one token per word, ``--l0``
features firing per token, Zipf-like feature frequencies, 5% of the features planted on
translated words), generated shard by shard, so the peak memory reported is the statistics'
own. Prints the time and the peak resident memory of each part.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from ..align.aligner import AlignConfig, align_sentences
from ..paired.word_level import word_level_stats
from .null_bench import _RssWatch

_VOCAB = 20_000


def synthetic_corpus(n_pairs: int, seed: int = 0
                     ) -> tuple[list[list[str]], list[list[str]], list[np.ndarray]]:
    """(source sentences, target sentences, per pair the target position of each source
    word)."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, _VOCAB + 1)
    zipf /= zipf.sum()
    src_words = np.array([f"s{i}" for i in range(_VOCAB)])
    trg_words = np.array([f"t{i}" for i in rng.permutation(_VOCAB)])
    src, trg, where = [], [], []
    for _ in range(n_pairs):
        idx = rng.choice(_VOCAB, size=int(rng.integers(8, 41)), p=zipf)
        perm = np.arange(idx.size)
        swap = np.flatnonzero(rng.random(idx.size - 1) < 0.2)
        for i in swap:
            perm[i], perm[i + 1] = perm[i + 1], perm[i]
        src.append(src_words[idx].tolist())
        trg.append(trg_words[idx[perm]].tolist())
        where.append(np.argsort(perm))
    return src, trg, where


def synthetic_shard(pairs: np.ndarray, src: list[list[str]], where: list[np.ndarray],
                    d_sae: int, l0: int, rng: np.random.Generator
                    ) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """One shard's activation rows and token-to-word map (one token per word, BOS at 0)."""
    freq = 1.0 / np.arange(1, d_sae + 1) ** 0.8
    freq /= freq.sum()
    planted = max(d_sae // 20, 1)
    parts, maps = [], []
    for lang in ("en", "es"):
        lens = np.array([len(src[p]) for p in pairs])
        n = int(lens.sum())
        pair_of = np.repeat(pairs, lens)
        word = np.concatenate([np.arange(k) for k in lens])
        maps.append(pl.DataFrame({"pair_id": pair_of.astype(np.uint32), "lang": lang,
                                  "token_pos": (word + 1).astype(np.uint16),
                                  "word": word.astype(np.uint16)}))
        per = rng.poisson(l0, n)
        tok = np.repeat(np.arange(n), per)
        feat = rng.choice(d_sae, size=tok.size, p=freq)
        # planted features fire on a word's hash in both languages, on the aligned positions
        src_word = np.concatenate([np.array([int(w[1:]) for w in src[p]]) for p in pairs])
        if lang == "es":
            order = np.concatenate([off + where[p] for p, off in
                                    zip(pairs, np.concatenate([[0], np.cumsum(lens)[:-1]]))])
            src_word = src_word[np.argsort(order)]
        hit = src_word % 97 < 2
        tok = np.concatenate([tok, np.flatnonzero(hit)])
        feat = np.concatenate([feat, d_sae - 1 - src_word[hit] % planted])  # rare ids
        keep = np.unique(tok * d_sae + feat)
        tok, feat = keep // d_sae, keep % d_sae
        parts.append(pl.DataFrame({
            "pair_id": pair_of[tok].astype(np.uint32), "lang": lang,
            "token_pos": (word[tok] + 1).astype(np.uint16), "feature_id": feat.astype(np.uint32),
            "value": rng.gamma(2.0, 1.0, tok.size).astype(np.float32)}))
    return pl.concat(parts).lazy(), pl.concat(maps)


def links_table(n_pairs: int, where: list[np.ndarray]) -> pl.DataFrame:
    """The gold links (the aligner's output is timed separately)."""
    lens = np.array([w.size for w in where])
    return pl.DataFrame({
        "pair_id": np.repeat(np.arange(n_pairs), lens).astype(np.uint32),
        "word_a": np.concatenate([np.arange(k) for k in lens]).astype(np.uint16),
        "word_b": np.concatenate(where).astype(np.uint16),
        "start_a": 0, "end_a": 1, "start_b": 0, "end_b": 1}).cast(
        {c: pl.UInt32 for c in ("start_a", "end_a", "start_b", "end_b")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=93_470)
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--l0", type=int, default=60, help="features firing per token")
    parser.add_argument("--shard-pairs", type=int, default=2_000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--skip-align", action="store_true")
    args = parser.parse_args(argv)
    src, trg, where = synthetic_corpus(args.pairs)
    print(f"corpus: {args.pairs:,} pairs, {sum(map(len, src)):,} words per language")
    if not args.skip_align:
        with _RssWatch() as rss:
            t0 = time.perf_counter()
            links = align_sentences(src, trg, AlignConfig())
            took = time.perf_counter() - t0
        gold = sum(w.size for w in where)
        correct = sum(len(set(p) & set(enumerate(w.tolist()))) for p, w in zip(links, where))
        found = sum(map(len, links))
        print(f"align (eflomal, both directions, intersect): {took:.1f} s, peak RSS "
              f"{rss.peak / 2**30:.2f} GiB, {found:,} links, AER "
              f"{1 - 2 * correct / (found + gold):.3f}")
    rng = np.random.default_rng(1)
    texts = pl.DataFrame({"pair_id": np.repeat(np.arange(args.pairs), 2).astype(np.uint32),
                          "lang": ["en", "es"] * args.pairs,
                          "text": [" ".join(s) for pair in zip(src, trg) for s in pair]})
    tmp = tempfile.TemporaryDirectory(prefix="words-bench-")
    shards, rows = [], 0
    for lo in range(0, args.pairs, args.shard_pairs):  # on disk, as the pipeline reads them
        acts, tokmap = synthetic_shard(np.arange(lo, min(lo + args.shard_pairs, args.pairs)),
                                       src, where, args.features, args.l0, rng)
        path = Path(tmp.name) / f"{lo:08d}.parquet"
        acts.collect().write_parquet(path)
        rows += pl.scan_parquet(path).select(pl.len()).collect().item()
        shards.append((pl.scan_parquet(path), tokmap))
    with _RssWatch() as rss:
        t0 = time.perf_counter()
        stats, _ = word_level_stats(shards, {("en", "es"): links_table(args.pairs, where)}, texts,
                                    scored=np.arange(args.pairs), d_sae=args.features,
                                    langs=["en", "es"], replicates=args.bootstrap)
        took = time.perf_counter() - t0
    print(f"word-level statistics: {rows:,} activation rows, {args.features:,} features, "
          f"{took:.1f} s, peak RSS {rss.peak / 2**30:.2f} GiB (the token-to-word maps held "
          f"in memory included); {int((stats['r_word_lo'] > 0.1).sum())} features with "
          "r_word_lo > 0.1")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
