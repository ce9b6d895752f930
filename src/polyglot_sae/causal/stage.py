"""The causal stage's files: from the prepared model, the SAE, the corpus and its splits, the
max table and the score tables to ``results/{run}/causal/{sae}.parquet`` (and its figure)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.errors import InputError

from .config import CausalConfig
from .select import features_under_test, heldout_pool

log = logging.getLogger(__name__)

MAXACTS_COLUMNS = ["pair_id", "lang", "feature_id", "value", "token_id"]


def check_contexts(config: CausalConfig, langs: Sequence[str]) -> None:
    for lang, texts in config.contexts_for(list(langs)).items():
        if not [t for t in texts if t.strip()]:
            raise InputError("config", f"causal.contexts.{lang}",
                             f"no neutral contexts for language {lang!r}",
                             f"add a list of short neutral sentence starts in {lang} under "
                             f"causal.contexts.{lang}, e.g. the translations of the English "
                             "defaults")


def causal_file(*, model_dir: str | Path, sae_dir: str | Path, hook: str,
                pairs_path: str | Path, train_path: str | Path, score_path: str | Path,
                maxacts_path: str | Path, scores: Mapping[str, str | Path],
                out_path: str | Path, langs: Sequence[str], config: CausalConfig,
                figure_path: str | Path | None = None, sae_id: str = "",
                dictionary_path: str | Path | None = None) -> pl.DataFrame:
    """Run the causal check and write its table (and, with `figure_path`, its figure; with
    `dictionary_path`, the whole dictionary, empty when ``causal.dictionary_sentences`` is 0,
    its validation in the metadata). `scores`: method -> that method's score table
    (``feature_id, dead, rank``; ``class`` for paired)."""
    from polyglot_sae.device import resolve_device
    from polyglot_sae.model.load import check_hook, load_model, load_spec
    from polyglot_sae.model.saes import check_sae_fits, load_sae

    from .run import causal_table

    langs = list(langs)
    check_contexts(config, langs)
    device = resolve_device(config.device)
    sae = load_sae(sae_dir, device=device)
    d_sae = int(sae.cfg.d_sae)
    tables = {m: pl.read_parquet(p) for m, p in scores.items()}
    tested = features_under_test(tables, top_n=config.top_n, class_top_n=config.class_top_n,
                                 extra=config.features, d_sae=d_sae)
    pairs = pl.read_parquet(pairs_path).filter(pl.col("lang").is_in(langs))
    pool = heldout_pool(pairs, train_path, score_path, pairs_path, config.pool_pairs,
                        config.seed, config.pool_part)
    meta = read_metadata(maxacts_path)
    have = pl.read_parquet_schema(maxacts_path)
    if "token_id" not in have:
        raise InputError(maxacts_path, "token_id", "the max table has no token of each maximum",
                         "rebuild it with this version's reduce rule")
    maxacts = pl.read_parquet(maxacts_path, columns=MAXACTS_COLUMNS)
    n_scored = int(meta.get("n_pairs") or maxacts["pair_id"].n_unique())

    t0 = time.perf_counter()
    model = load_model(model_dir, device=device)
    where = f"config saes[{sae_id}] ({sae_dir})"
    check_hook(model, hook, where)
    check_sae_fits(sae, model, hook, where)
    timings = {"load": time.perf_counter() - t0}
    checks: dict = {}
    work: dict = {}
    table, dictionary = causal_table(model, sae, hook, pool, tested, maxacts, langs, config,
                                     n_scored_pairs=n_scored, timings=timings, checks=checks,
                                     work=work)
    provenance = {"causal": asdict(config), "langs": langs, "hook": hook, "sae_id": sae_id,
                  "sae_path": str(sae_dir), "d_sae": d_sae, "model": load_spec(model_dir),
                  "heldout_pairs_scanned": int(pool["pair_id"].n_unique()),
                  "score_tables": {m: str(p) for m, p in scores.items()},
                  "timings_s": {k: round(v, 2) for k, v in timings.items()}, "work": work}
    write_parquet(table, out_path, provenance)
    if dictionary_path is not None:
        if dictionary is None:
            dictionary = pl.DataFrame(schema={"feature_id": pl.UInt32})
        write_parquet(dictionary, dictionary_path, {**provenance, "validation": checks})
    if figure_path is not None:
        from .plots import plot_causal

        plot_causal(table, figure_path, langs, note=f"SAE {sae_id or sae_dir}, hook {hook}")
    return table


def causal_figure_file(table_path: str | Path, out_path: str | Path, langs: Sequence[str],
                       note: str = "") -> Path:
    """The figure from the table alone (a cheap rule of its own)."""
    from .plots import plot_causal

    meta = read_metadata(table_path)
    extra = f"{meta['causal']['pairs_per_lang']} held-out sentences per language at most, " \
            f"{meta['causal']['controls']} controls" if "causal" in meta else ""
    return plot_causal(pl.read_parquet(table_path), out_path, list(langs),
                       note="; ".join(x for x in (note, extra) if x))


def dictionary_figure_file(dictionary_path: str | Path, score_paths: Sequence[str | Path],
                           out_path: str | Path, langs: Sequence[str], note: str = "") -> Path:
    """The whole-dictionary figure from its table (and the paired scores, when given, for the
    classes)."""
    from .plots import plot_dictionary

    meta = read_metadata(dictionary_path)
    scores = pl.read_parquet(score_paths[0]) if score_paths else None
    extra = (f"{meta['causal']['dictionary_sentences']} held-out sentences per feature and "
             "language" if "causal" in meta else "")
    return plot_dictionary(pl.read_parquet(dictionary_path), scores, out_path, list(langs),
                           note="; ".join(x for x in (note, extra) if x),
                           checks=meta.get("validation"))
