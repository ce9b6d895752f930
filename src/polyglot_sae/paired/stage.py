"""The paired method's files: statistics from the reducer's tables, then the classes.

Two steps, two files, so that a class threshold change reruns only the cheap second one:
``results/{run}/paired/{sae}.stats.parquet`` (``stats.paired_stats``, the bootstrap included)
and ``scores/{sae}.paired.parquet`` (``classes.classify``: the common score columns
``feature_id, dead, rank`` with the statistics and ``class``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import polars as pl

from ..atomic_io import read_metadata, write_parquet
from ..errors import InputError
from polyglot_sae.activations.reduce import n_pairs_of
from .classes import ClassConfig, classify
from .stats import PairedConfig, paired_stats


def paired_stats_file(maxacts_path: str | Path, out_path: str | Path, *, langs: Sequence[str],
                      config: PairedConfig, lengths_path: str | Path | None = None,
                      vocab_path: str | Path | None = None, d_sae: int | None = None,
                      paraphrase: tuple[str, str | Path, str | Path | None] | None = None,
                      ) -> pl.DataFrame:
    """Statistics of a max table into ``out_path``. ``paraphrase``: (the language it
    paraphrases, its max table, its lengths table or None); its language is the one its
    table holds."""
    meta = read_metadata(maxacts_path)
    d_sae = d_sae if d_sae is not None else meta.get("d_sae")
    if d_sae is None:
        raise InputError(maxacts_path, "d_sae", "not recorded in the table's metadata",
                         "pass d_sae (--d-sae)")
    table = pl.scan_parquet(maxacts_path)
    lengths = pl.read_parquet(lengths_path) if lengths_path is not None else None
    para = None
    if paraphrase is not None:
        para, lengths = paraphrase_input(*paraphrase, lengths)
    stats = paired_stats(table, n_pairs=n_pairs_of(maxacts_path, table), d_sae=int(d_sae),
                         langs=langs, lengths=lengths,
                         vocab=pl.read_parquet(vocab_path) if vocab_path is not None else None,
                         paraphrase=para, config=config)
    provenance = meta | {"paired": asdict(config), "langs": list(langs), "d_sae": int(d_sae),
                         "paraphrase": None if para is None else list(para[:2])}
    write_parquet(stats, out_path, provenance)
    return stats


def paraphrase_input(of_lang: str, para_path: str | Path, para_lengths: str | Path | None,
                     lengths: pl.DataFrame | None,
                     ) -> tuple[tuple[str, str, pl.LazyFrame], pl.DataFrame | None]:
    """The ``paraphrase`` argument of ``paired_stats`` from the paraphrase's max table (its
    language named by the extraction's provenance, else by its rows), and the lengths table
    with the paraphrase's lengths appended."""
    para_table = pl.scan_parquet(para_path)
    para_lang = (read_metadata(para_path).get("langs")
                 or para_table.select(pl.col("lang").unique()).collect()["lang"].to_list()
                 or [None])[0]
    if para_lang is None:
        raise InputError(para_path, "langs", "the paraphrase table names no language",
                         "rebuild it with the extract_paraphrase and reduce_paraphrase rules")
    if para_lengths is not None and lengths is not None:
        lengths = pl.concat([lengths, pl.read_parquet(para_lengths)])
    return (of_lang, para_lang, para_table), lengths


def classify_file(stats_path: str | Path, out_path: str | Path, *, langs: Sequence[str],
                  classes: ClassConfig) -> pl.DataFrame:
    """The classes and the rank of a statistics file into the scores file ``out_path``."""
    scores = classify(pl.read_parquet(stats_path), classes, list(langs))
    write_parquet(scores, out_path, read_metadata(stats_path) | {"classes": asdict(classes)})
    return scores
