"""The dataset-size ablation of the paired method: per nested prefix size, the concept-bilingual
count and the top-k's overlap with the full ranking, with intervals from subsets of distinct
pairs (``polyglot_sae.subsample``). Every prefix and subset gets the whole method: statistics
with their own bootstrap bound, then the classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from jaxtyping import UInt32

from ..subsample import SubsampleConfig, renumber, size_ablation
from .classes import ClassConfig, classify
from .stats import PairedConfig, paired_stats


def paired_size_ablation(maxacts: pl.DataFrame, *, pair_ids: UInt32[np.ndarray, " n"], d_sae: int,
                         langs: Sequence[str], lengths: pl.DataFrame | None,
                         vocab: pl.DataFrame | None,
                         paraphrase: tuple[str, str, pl.DataFrame | pl.LazyFrame] | None,
                         config: PairedConfig, classes: ClassConfig,
                         subsample: SubsampleConfig) -> pl.DataFrame:
    """``subsample.size_ablation`` with the paired method; ``n_found`` counts concept features.
    ``lengths`` covers every language, the paraphrase's included."""

    def score(ids: np.ndarray) -> pl.DataFrame:
        para = None if paraphrase is None else (*paraphrase[:2], renumber(paraphrase[2], ids))
        stats = paired_stats(renumber(maxacts, ids), n_pairs=len(ids), d_sae=d_sae, langs=langs,
                             lengths=None if lengths is None else renumber(lengths, ids),
                             vocab=vocab, paraphrase=para, config=config)
        return classify(stats, classes, langs)

    return size_ablation(score, lambda s: int((s["class"] == "concept").sum()),
                         pair_ids=pair_ids, config=subsample)
