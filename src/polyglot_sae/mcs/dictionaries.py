"""The dictionary-comparison stage: a ladder's MCS tables and figures, and whether the
significant bilingual features are the reproducible (high-MCS) ones. The numerics live in
``core``, ``baseline`` and ``ladder``, the figures in ``plots``; this module writes the stage's files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_json, write_parquet
from polyglot_sae.mcs.core import McsConfig
from polyglot_sae.mcs.baseline import random_baseline_mcs
from polyglot_sae.mcs.ladder import bilingual_vs_mcs
from polyglot_sae.mcs.plots import plot_mcs_histogram, plot_mcs_ladder, plot_mcs_scatter


def write_ladder(result: dict[str, Any], out: Mapping[str, str], *, scored: str,
                 config: McsConfig) -> None:
    """``compare_ladder``'s result as the ``ladder``, ``emd`` and ``features`` Parquet files
    and the ``histogram`` (the scored SAE against the widest dictionary, with the random
    baseline and analytic curve) and ``widths`` (high/low counts and shares by width) PNGs."""
    meta = {"reference": result["reference"], "reference_width": result["reference_width"],
            "d_in": result["d_in"], "threshold": config.threshold,
            "random_seeds": list(config.random_seeds), "emd_low_only": config.emd_low_only}
    write_parquet(result["ladder"], out["ladder"], meta)
    write_parquet(result["emd"], out["emd"], meta)
    write_parquet(result["features"], out["features"],
                  meta | {"scored": scored, "first": result["first"], "second": result["second"]})
    features = result["features"]
    width = features.height
    random = result["random"].get(width)
    if random is None:  # the scored SAE is the widest: no baseline of its shape was drawn
        random = random_baseline_mcs(width, result["reference_width"], result["d_in"],
                                     config.random_seeds, device=config.device)
    plot_mcs_histogram(features["mcs"].to_numpy(), random, out["histogram"],
                       k_dim=result["d_in"], m_draws=result["reference_width"], label=scored,
                       reference_label=result["first"], threshold=config.threshold,
                       bins=config.bins, note=f"{len(config.random_seeds)} random seeds")
    plot_mcs_ladder(result["ladder"], out["widths"], reference_label=result["reference"],
                    threshold=config.threshold)


def mcs_of_bilingual_features(features_path: str | Path, scores_path: str | Path,
                              out_json: str | Path, out_scatter: str | Path, *,
                              threshold: float, note: str = "") -> dict[str, Any]:
    """Are the features significant at q < 0.05 more often high-MCS than the other alive ones
    (``ladder.bilingual_vs_mcs``)? Writes the test as JSON and the MCS scatter against the two
    widest other dictionaries with those features marked."""
    features = pl.read_parquet(features_path).sort("feature_id")
    scores = pl.read_parquet(scores_path).sort("feature_id")
    alive = ~scores["dead"].to_numpy()
    if "q_value" in scores.columns:
        significant = (scores["q_value"] < 0.05).fill_null(False).to_numpy()
    else:  # no null: nothing is called significant, and the test says so
        significant = np.zeros(scores.height, dtype=bool)
    test = bilingual_vs_mcs(features["mcs"].to_numpy(), significant, alive, threshold=threshold)
    write_json(test, out_json)
    names = read_metadata(features_path)
    first, second = features["mcs"].to_numpy(), features["mcs_second"].to_numpy()
    if names.get("second") is None:  # a two-dictionary ladder: the scatter degenerates to y = x
        second, names["second"] = first, f"{names.get('first')} (no third dictionary)"
    plot_mcs_scatter(first, second, out_scatter, label=str(names.get("scored", "")),
                     label_b=str(names.get("first")), label_c=str(names["second"]),
                     significant=significant & alive, threshold=threshold, note=note)
    return test
