"""Benchmark of the all-features browser: how long headless Chromium takes to load and render
``explorer.html`` for a synthetic SAE (65,536 alive features by default).

    python -m polyglot_sae.bench.explorer_bench               # 65,536 features
    python -m polyglot_sae.bench.explorer_bench --features 500   # a smoke run

The page records ``performance.now()`` once its script has drawn the table and the scatter
(``<body data-render-ms>``: from navigation start, the data file's load and parse included);
the bench prints it with the data file's size. Target: under 2 s at 65,536 features.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile

import numpy as np
import polars as pl

from ..report.browser import dump_dom, file_url
from ..report.explorer import explorer_data, write_explorer

CLASSES = ("concept", "context", "shared_string", "length", "weak", "low_support",
           "lang_specific:en", "lang_specific:es")


def synthetic_table(n: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A joined feature table and a words table with GemmaScope-like spreads."""
    rng = np.random.default_rng(seed)
    rho = rng.uniform(-0.2, 0.95, n)
    table = pl.DataFrame({
        "feature_id": np.arange(n, dtype=np.uint32), "dead": np.zeros(n, bool),
        "rank": rng.permutation(n).astype(np.uint32), "class": rng.choice(CLASSES, n),
        "rho": rho, "rho_lo": rho - 0.1, "rho_para": rng.uniform(0, 1, n),
        "r_word": rho * rng.uniform(0, 1, n), "r_word_lo": rho * rng.uniform(-0.2, 0.8, n),
        "align_lift": rng.uniform(-0.1, 1, n), "n_cofire": rng.integers(0, 500, n),
        "exact_rank": rng.permutation(n), "seed_rank": rng.permutation(n)})
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzáéíóúñ"))
    vocab = ["".join(rng.choice(letters, k)) for k in rng.integers(2, 9, 5000)]
    words = pl.DataFrame({
        "feature_id": np.repeat(np.arange(n, dtype=np.uint32), 6),
        "lang": np.tile(np.repeat(["en", "es"], 3), n),
        "word_rank": np.tile([0, 1, 2], 2 * n).astype(np.uint32),
        "word": rng.choice(vocab, 6 * n)})
    return table, words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=65_536)
    args = parser.parse_args(argv)
    table, words = synthetic_table(args.features)
    data = explorer_data(table, words, ["en", "es"], set())
    with tempfile.TemporaryDirectory(prefix="explorer-bench-") as tmp:
        page = write_explorer(data, tmp, "bench", "synthetic")
        size = (page.parent / "explorer.data.js").stat().st_size
        dom = dump_dom(file_url(page))
    ms = re.search(r'data-render-ms="(\d+)"', dom)
    errors = re.search(r'data-errors="([^"]*)"', dom)
    status = re.search(r'id="status"[^>]*>([^<]*)<', dom)
    print(f"explorer: {args.features:,} features, data file {size / 2**20:.1f} MiB, rendered in "
          f"{ms.group(1) if ms else '?'} ms ({status.group(1) if status else 'no status'}); "
          f"errors: {errors.group(1) if errors else 'none'}")
    return 0 if ms and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
