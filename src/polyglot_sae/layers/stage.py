"""The layer profile's job: one row per SAE from its stages' tables, written with provenance."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polyglot_sae.atomic_io import write_parquet

from .profile import (LayerConfig, check_one_per_hook, class_columns, hook_order,
                      logit_lens_columns, overlap_columns, quality_columns)


def layer_row(entry: dict[str, Any], files: dict[str, str | None], langs: Sequence[str],
              cfg: LayerConfig) -> dict[str, Any]:
    """One hook's row. `files`: quality (json), paired, maxacts, and, when the run has them,
    para (the paraphrase's max table) and enrichment (the logit lens)."""
    paired = pl.read_parquet(files["paired"])
    para = pl.read_parquet(files["para"]) if files.get("para") else None
    row: dict[str, Any] = {"sae": entry["id"], "hook": entry["hook"],
                           "layer": hook_order(entry["hook"])[0], "d_sae": paired.height}
    row |= quality_columns(json.loads(Path(files["quality"]).read_text()))
    row |= class_columns(paired, langs)
    row |= overlap_columns(pl.read_parquet(files["maxacts"]), langs, para, cfg)
    if files.get("enrichment"):
        row |= logit_lens_columns(pl.read_parquet(files["enrichment"]), paired, langs)
    return row


def layer_profile_file(entries: Sequence[dict[str, Any]], files: Sequence[dict[str, str | None]],
                       langs: Sequence[str], out: str | Path, cfg: LayerConfig) -> pl.DataFrame:
    """`sweeps/layers.parquet`: the rows of `layer_row` in the order of the forward pass."""
    check_one_per_hook(entries)
    rows = [layer_row(e, f, langs, cfg) for e, f in zip(entries, files)]
    rows.sort(key=lambda r: hook_order(r["hook"]))
    table = pl.DataFrame(rows)
    write_parquet(table, out, {"langs": list(langs), "bootstrap": cfg.bootstrap,
                               "seed": cfg.seed})
    return table
