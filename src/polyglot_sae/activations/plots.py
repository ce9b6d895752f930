"""The seed's first figure, from the max table: how much of each language's activation mass the
features carry (see ``plot_activation_share``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.errors import InputError
from polyglot_sae.figures import (DEFAULT_STYLE, FigureStyle, new_figure, require_columns,
                                  save_figure)

# The blog's thresholds for its first figure: the mean and these quantiles of positive values.
SHARE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def plot_activation_share(
    maxacts: pl.DataFrame,
    n_pairs: int,
    langs: Sequence[str],
    out: str | Path,
    *,
    d_sae: int | None = None,
    note: str = "",
    style: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """The seed's first figure, one panel per language: for each feature, the share of pairs on
    which its max activation exceeds a threshold, features sorted by that share (log x), one
    line per threshold (mean and 5/25/50/75/95% quantiles of the language's positive maxima).

    With ``d_sae`` the features that never exceed a threshold are drawn as the zero tail the
    blog shows; without it they are left out.
    """
    require_columns(maxacts, ("lang", "feature_id", "value"), "max-activation table")
    langs = list(langs)
    if n_pairs < 1:
        raise InputError("plot_activation_share", "n_pairs", f"{n_pairs} < 1",
                         "pass the number of pairs the table was built from")
    fig, axes = new_figure(style, ncols=len(langs), sharey=True)
    for ax, lang in zip(axes, langs):
        part = maxacts.filter(pl.col("lang") == lang)
        if part.height == 0:
            raise InputError("max-activation table", "lang", f"no rows for language {lang!r}",
                             f"pass languages present in the table ({sorted(maxacts['lang'].unique())})")
        values = part["value"].cast(pl.Float64).to_numpy()
        features = part["feature_id"].cast(pl.Int64).to_numpy()
        positive = values > 0
        values, features = values[positive], features[positive]
        n_features = d_sae if d_sae is not None else int(features.max()) + 1
        thresholds = [("mean", values.mean())] + [
            (f"q{round(q * 100):02d}", v) for q, v in zip(SHARE_QUANTILES, np.quantile(values, SHARE_QUANTILES))
        ]
        for name, threshold in thresholds:
            count = np.bincount(features[values > threshold], minlength=n_features)
            share = np.sort(count)[::-1] / n_pairs * 100
            if d_sae is None:
                share = share[share > 0]
            ax.plot(np.arange(1, share.size + 1), share, label=f"{name} = {threshold:.3g}")
        ax.set_xscale("log")
        ax.set_title(f"{lang}: {part.height:,} positive (pair, feature) maxima")
        ax.set_xlabel("features, ordered by share (log scale)")
        ax.legend(title="threshold", fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("% of pairs where the feature's max > threshold")
    fig.suptitle("Share of sentence pairs on which each SAE feature fires, per language")
    caption = (
        f"Computed from the per-(pair, language) max-activation table ({n_pairs:,} pairs, BOS "
        "excluded). A feature counts on a pair when its max over the sentence's tokens exceeds "
        "the threshold; thresholds are the mean and quantiles of that language's positive "
        "maxima (the blog took them over all positive token activations, so its thresholds are lower)."
    )
    return save_figure(fig, out, caption, note, style)
