"""The ``align`` stage: the corpus' word links, one table per pair of corpus languages.

``results/{corpus}/align/{a}-{b}.parquet`` for every pair of languages a < b in the corpus'
order (``itertools.combinations``: the word-level statistics, like ``paired``, take the least
bilingual pair of languages, so every pair is needed), one row per link:

    pair_id:u32, word_a:u16, word_b:u16   the link (word indices of ``segment.words``)
    start_a, end_a, start_b, end_b:u32    the two words' character spans in the pair's texts

Pairs where a side has no word are skipped and counted in the table's provenance
(``skipped_empty``) with the aligned pair and link counts and the aligner's settings.
"""

from __future__ import annotations

from dataclasses import asdict
from importlib.metadata import version
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl

from ..atomic_io import write_parquet
from ..errors import InputError
from .aligner import AlignConfig, align_sentences
from .segment import words

LINKS_SCHEMA = {"pair_id": pl.UInt32, "word_a": pl.UInt16, "word_b": pl.UInt16,
                "start_a": pl.UInt32, "end_a": pl.UInt32, "start_b": pl.UInt32,
                "end_b": pl.UInt32}
_MAX_WORDS = np.iinfo(np.uint16).max


def language_pairs(langs: list[str]) -> list[tuple[str, str]]:
    """Every pair of corpus languages, in corpus order."""
    return list(combinations(langs, 2))


def sides(pairs: pl.DataFrame, a: str, b: str, source: str = "pairs table"
          ) -> tuple[np.ndarray, list[str], list[str]]:
    """(pair ids, texts in a, texts in b) of the pairs that have both languages, by pair id."""
    missing = {"pair_id", "lang", "text"} - set(pairs.columns)
    if missing:
        raise InputError(source, ", ".join(sorted(missing)), "missing column(s)",
                         "pass the corpus stage's pairs.parquet")
    wide = (pairs.filter(pl.col("lang").cast(pl.String).is_in([a, b]))
            .pivot(on="lang", index="pair_id", values="text", aggregate_function="first")
            .drop_nulls().sort("pair_id"))
    if a not in wide.columns or b not in wide.columns or wide.height == 0:
        raise InputError(source, "lang", f"no pair has both {a!r} and {b!r}",
                         "list the corpus' languages in corpus.langs")
    return wide["pair_id"].to_numpy(), wide[a].to_list(), wide[b].to_list()


def align_pairs(pairs: pl.DataFrame, a: str, b: str, config: AlignConfig,
                source: str = "pairs table") -> tuple[pl.DataFrame, dict]:
    """The link table of languages (a, b) (module docstring) and its counts."""
    ids, texts_a, texts_b = sides(pairs, a, b, source)
    seg_a, seg_b = [words(t) for t in texts_a], [words(t) for t in texts_b]
    keep = [i for i in range(ids.size) if len(seg_a[i][0]) and len(seg_b[i][0])]
    too_long = [int(ids[i]) for i in keep
                if max(len(seg_a[i][0]), len(seg_b[i][0])) > _MAX_WORDS]
    if too_long:
        raise InputError(source, "text", f"pairs {too_long[:5]} have more than {_MAX_WORDS} "
                         "words", "split those sentences")
    links = align_sentences([seg_a[i][0] for i in keep], [seg_b[i][0] for i in keep], config)
    rows = [(int(ids[i]), wa, wb, *seg_a[i][1][wa], *seg_b[i][1][wb])
            for i, pair_links in zip(keep, links) for wa, wb in pair_links]
    table = pl.DataFrame(rows, schema=LINKS_SCHEMA, orient="row")
    counts = {"pairs": int(ids.size), "aligned": len(keep),
              "skipped_empty": int(ids.size - len(keep)), "links": table.height}
    return table, counts


def align_file(pairs_path: str | Path, out_dir: str | Path, langs: list[str],
               config: AlignConfig) -> dict[str, dict]:
    """Every language pair's link table into ``out_dir/{a}-{b}.parquet``; returns the counts."""
    pairs = pl.read_parquet(pairs_path)
    counts = {}
    for a, b in language_pairs(list(langs)):
        table, counts[f"{a}-{b}"] = align_pairs(pairs, a, b, config, str(pairs_path))
        write_parquet(table, Path(out_dir) / f"{a}-{b}.parquet",
                      {"align": asdict(config), "langs": [a, b], **counts[f"{a}-{b}"],
                       "eflomal": version("eflomal"), "segmentation": "polyglot_sae.align"
                       ".segment.words"})
    return counts
