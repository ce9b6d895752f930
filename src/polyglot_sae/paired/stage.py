"""The paired method's files: statistics from the reducer's tables, then the classes.

Two steps, two files, so that a class threshold change reruns only the cheap second one:
``results/{run}/paired/{sae}.stats.parquet`` (``stats.paired_stats``, the bootstrap included)
and ``scores/{sae}.paired.parquet`` (``classes.classify``: the common score columns
``feature_id, dead, rank`` with the statistics and ``class``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import polars as pl

from ..atomic_io import read_metadata, write_parquet
from ..errors import InputError
from polyglot_sae.activations.reduce import n_pairs_of
from polyglot_sae.align.tokens import load_tokenizer, words_of_tokens
from .classes import ClassConfig, classify
from .stats import PairedConfig, paired_stats
from .word_level import check_tables, word_level_stats


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
                  classes: ClassConfig, word_stats_path: str | Path | None = None
                  ) -> pl.DataFrame:
    """The classes and the ranks of a statistics file, with the word-level statistics joined
    when given (their columns after the verse-level ones), into the scores file ``out_path``."""
    stats = pl.read_parquet(stats_path)
    meta = read_metadata(stats_path)
    if word_stats_path is not None:
        words = pl.read_parquet(word_stats_path)
        if words.height != stats.height:
            raise InputError(word_stats_path, "feature_id", f"{words.height} features, the "
                             f"statistics table has {stats.height}", "rebuild both for one SAE")
        stats = stats.join(words.with_columns(pl.col("feature_id").cast(stats["feature_id"].dtype)),
                           on="feature_id", how="left", maintain_order="left")
        meta |= {"word_level": read_metadata(word_stats_path)}
    scores = classify(stats, classes, list(langs))
    write_parquet(scores, out_path, meta | {"classes": asdict(classes)})
    return scores


def word_stats_file(acts: Sequence[str | Path], tokens: Sequence[str | Path],
                    pairs_path: str | Path, links: Mapping[tuple[str, str], str | Path],
                    model_dir: str | Path, out_stats: str | Path, out_examples: str | Path, *,
                    langs: Sequence[str], config: PairedConfig, n_examples: int = 3,
                    d_sae: int | None = None) -> pl.DataFrame:
    """Word-level statistics (``word_level``) of one SAE's extraction shards (``acts`` and
    ``tokens`` in the same shard order) into ``out_stats``, its top co-fired links per feature
    into ``out_examples``."""
    texts = pl.read_parquet(pairs_path)
    meta = read_metadata(acts[0]) if acts else {}
    d_sae = d_sae if d_sae is not None else meta.get("d_sae")
    if d_sae is None:
        raise InputError(acts[0] if acts else "acts", "d_sae", "not recorded in the "
                         "extraction's metadata", "pass d_sae")
    tables = {pair: pl.read_parquet(path) for pair, path in links.items()}
    check_tables(tables, langs)
    tokenizer = load_tokenizer(model_dir)
    shards = []
    for act_path, tok_path in zip(acts, tokens):
        tok = pl.read_parquet(tok_path, columns=["pair_id", "lang", "token_pos", "token_id"])
        tokmap = words_of_tokens(texts, tok, tokenizer, str(tok_path))
        act = pl.scan_parquet(act_path).with_columns(pl.col("lang").cast(pl.String))
        shards.append((act, tokmap))
    stats, examples = word_level_stats(
        shards, tables, texts, scored=texts["pair_id"].unique().to_numpy(), d_sae=int(d_sae),
        langs=langs, replicates=config.bootstrap, level=config.level, seed=config.seed,
        n_examples=n_examples)
    provenance = {"paired": asdict(config), "langs": list(langs), "d_sae": int(d_sae),
                  "links": {f"{a}-{b}": read_metadata(p) for (a, b), p in links.items()}}
    write_parquet(stats, out_stats, provenance)
    write_parquet(examples, out_examples, provenance)
    return stats
