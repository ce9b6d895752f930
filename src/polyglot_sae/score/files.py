"""Scoring a max-table file into a scores file, with provenance: the I/O over the numerics of
``bilingual`` and ``null`` (which imports ``bilingual``; keeping the file step here is what
keeps the two free of an import circle)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import polars as pl

from polyglot_sae.activations.reduce import n_pairs_of
from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.errors import InputError
from polyglot_sae.score.bilingual import ScoreConfig, score_features
from polyglot_sae.score.null import NullConfig, score_with_null


def score_file(
    maxacts_path: str | Path,
    out_path: str | Path,
    *,
    langs: Sequence[str],
    config: ScoreConfig,
    d_sae: int | None = None,
    null: NullConfig | None = None,
) -> pl.DataFrame:
    """Score a max-activation parquet into ``out_path`` and return the scores.

    ``n_pairs`` comes from the table's provenance (see ``activations.reduce.n_pairs_of``),
    ``d_sae`` from the argument or else the provenance. With ``null`` (and
    ``null.permutations > 0``) the scores get the permutation null's ``p_value`` and
    ``q_value`` (see ``polyglot_sae.score.null``) and the provenance its settings.
    """
    meta = read_metadata(maxacts_path)
    d_sae = d_sae if d_sae is not None else meta.get("d_sae")
    if d_sae is None:
        raise InputError(
            maxacts_path, "d_sae", "not recorded in the table's metadata", "pass d_sae (--d-sae)"
        )
    # Lazy: load_rows reads one language at a time, so the whole table is never in memory.
    table = pl.scan_parquet(maxacts_path)
    n_pairs = n_pairs_of(maxacts_path, table)
    with_null = null is not None and null.permutations > 0
    try:
        if with_null:
            scores = score_with_null(table, n_pairs=n_pairs, d_sae=int(d_sae), langs=langs,
                                     score_config=config, null_config=null)
        else:
            scores = score_features(table, n_pairs=n_pairs, d_sae=int(d_sae), langs=langs,
                                    config=config)
    except ValueError as err:  # name the file: the table, not the caller, is what is wrong
        raise InputError(maxacts_path, "max-activation table", str(err),
                         "check --langs/--d-sae against the table, or rebuild it with reduce") from err
    provenance = (
        meta | asdict(config) | {"langs": list(langs), "n_pairs": n_pairs, "d_sae": int(d_sae)}
    )
    if with_null:
        provenance |= {f"null_{key}": value for key, value in asdict(null).items()}
    write_parquet(scores, out_path, provenance)
    return scores
