"""Deng et al.'s monolinguality of SAE features, for any number of languages, and how it
relates to the bilingual score.

For feature i and language L, with q_L[k, i] the feature's max activation on pair k's sentence
in L (0 where the table has no row)::

    nu(i, L) = mean_k q_L[k, i]  -  mean over (k, L' != L) of q_L'[k, i]

Both means run over all n_pairs pairs, silent ones included: a feature that fires strongly on
one pair in ten is less tied to L than one firing on every pair. Every language has the same
n_pairs samples, so the second term is the plain mean of the other languages' means. A feature
is specific to L when nu(i, L) is large; ``nu_max`` (over languages) is its monolinguality
and ``nu_lang`` the language attaining it. A bilingual feature fires alike in both languages,
so its nu_max is near 0: the bilingual score should rank-correlate positively with nu_max
(both are low for shared features).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from jaxtyping import Float64
from scipy.stats import spearmanr

from polyglot_sae.errors import InputError
from polyglot_sae.score.bilingual import check_pairs, load_rows

_TABLE = "max-activation table"


def monolinguality(
    maxacts: pl.DataFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str]
) -> pl.DataFrame:
    """nu for every (feature, language): ``feature_id:u32, lang:str, nu:f64, nu_max:f64,
    nu_lang:str``, d_sae * len(langs) rows sorted by feature_id then the order of ``langs``.

    ``nu_max`` and ``nu_lang`` are per feature, repeated on each of its rows; ``nu_lang`` is
    the first of ``langs`` among ties and null for a feature that never fires.
    """
    langs = list(langs)
    means = language_means(maxacts, n_pairs=n_pairs, d_sae=d_sae, langs=langs)
    k = len(langs)
    others = (means.sum(axis=0, keepdims=True) - means) / (k - 1)
    nu = means - others
    nu_max = nu.max(axis=0)
    best = np.asarray(langs, dtype=object)[nu.argmax(axis=0)]
    best[(means == 0).all(axis=0)] = None

    return pl.DataFrame({
        "feature_id": np.repeat(np.arange(d_sae, dtype=np.uint32), k),
        "lang": pl.Series(langs * d_sae, dtype=pl.String),
        "nu": nu.T.ravel(),
        "nu_max": np.repeat(nu_max, k),
        "nu_lang": pl.Series(np.repeat(best, k).tolist(), dtype=pl.String),
    })


def language_means(
    maxacts: pl.DataFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str]
) -> Float64[np.ndarray, "k d_sae"]:
    """Per language (rows follow ``langs``), each feature's mean max activation over all pairs."""
    try:
        if n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
        rows = load_rows(maxacts, list(langs), d_sae)
        check_pairs(rows, n_pairs)
    except ValueError as err:
        raise InputError(_TABLE, "rows", str(err),
                         "pass the table's n_pairs, d_sae and languages") from err
    return np.stack([np.bincount(r.feature_ids(), weights=r.value, minlength=d_sae)
                     for r in rows]) / n_pairs


def rank_correlation(scores: pl.DataFrame, nu_table: pl.DataFrame) -> dict[str, float | int]:
    """Spearman's rho between ``bi_score`` and ``nu_max`` over the alive features.

    ``scores``: the scoring table (``feature_id, bi_score, dead``); ``nu_table``: the output of
    ``monolinguality`` (or any table with ``feature_id, nu_max``, one value per feature).
    Returns ``{"rho", "p_value", "n_features"}``; rho and p are NaN when fewer than 3 features
    are alive or either column is constant, where the correlation is undefined.
    """
    for name, table, columns in (("scores", scores, ("feature_id", "bi_score", "dead")),
                                 ("monolinguality table", nu_table, ("feature_id", "nu_max"))):
        missing = sorted(set(columns) - set(table.columns))
        if missing:
            raise InputError(name, ", ".join(missing), "missing column(s)",
                             f"pass a table with columns {list(columns)}")
    per_feature = nu_table.select("feature_id", "nu_max").unique("feature_id", keep="first")
    joined = (
        scores.filter(~pl.col("dead") & pl.col("bi_score").is_not_null())
        .select("feature_id", "bi_score")
        .join(per_feature, on="feature_id", how="inner")
        .drop_nulls()
    )
    bi, nu = joined["bi_score"].to_numpy(), joined["nu_max"].to_numpy()
    n = joined.height
    if n < 3 or np.ptp(bi) == 0 or np.ptp(nu) == 0:
        return {"rho": float("nan"), "p_value": float("nan"), "n_features": n}
    result = spearmanr(bi, nu)
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "n_features": n}
