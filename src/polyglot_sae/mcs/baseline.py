"""The random baseline of MCS: Gaussian dictionaries of the same shapes (sampled) and the
analytic distribution of the post's footnote, with earth mover's distances between MCS
distributions (see ``mcs.core`` for MCS itself)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence


import numpy as np
import polars as pl
from jaxtyping import Float, Float32
from scipy import stats

from polyglot_sae.errors import InputError


from polyglot_sae.mcs.core import DEFAULT_BLOCK_BYTES, max_cosine_similarity


def random_dictionary(m: int, d: int, seed: int | np.random.SeedSequence) -> Float32[np.ndarray, "m d"]:
    """m rows of d i.i.d. N(0, 1) entries (the post's random dictionaries): their directions
    are uniform on the sphere."""
    if m < 0 or d < 1:
        raise InputError("random_dictionary", "shape", f"({m}, {d})", "pass m >= 0 and d >= 1")
    return np.random.default_rng(seed).standard_normal((m, d), dtype=np.float32)


def random_baseline_mcs(
    m_a: int, m_b: int, d: int, seeds: Sequence[int], *, chunk_rows: int | None = None,
    device: str = "cpu", block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Float32[np.ndarray, "s m_a"]:
    """MCS of a random m_a x d dictionary against a random m_b x d one, one row per seed. Each
    seed draws both dictionaries from its own independent streams (SeedSequence children)."""
    if not seeds:
        raise InputError("random_baseline_mcs", "seeds", "empty", "pass at least one seed")
    out = np.empty((len(seeds), m_a), dtype=np.float32)
    for row, seed in enumerate(seeds):
        seq_a, seq_b = np.random.SeedSequence(seed).spawn(2)
        out[row], _ = max_cosine_similarity(random_dictionary(m_a, d, seq_a),
                                            random_dictionary(m_b, d, seq_b),
                                            chunk_rows=chunk_rows, device=device,
                                            block_bytes=block_bytes)
    return out


# --- Analytic distribution (the post's footnote) ----------------------------------------------
#
# The cosine T of a fixed direction with a uniform random unit vector in K dimensions has
# density proportional to (1 - t^2)^((K-3)/2) on [-1, 1], i.e. (T + 1) / 2 ~ Beta(a, a) with
# a = (K - 1) / 2 (the footnote's x / sqrt(x^2 + y), x ~ N(0, 1), y ~ chi2(K - 1)). The MCS
# against M independent random directions is their maximum: CDF F(t)^M, density
# M f(t) F(t)^(M-1). This is exact for one row of A against a random B (the M cosines are then
# independent); a histogram of all of A's rows treats them as independent draws although they
# share B (the footnote's "like"), which only matters through correlations the post expects to
# be negligible. For learned dictionaries it is the law of directions unrelated to B.


def _check_analytic(k_dim: int, m_draws: int) -> float:
    if k_dim < 2:
        raise InputError("analytic MCS", "k_dim", f"{k_dim} < 2", "cosines need at least 2 dimensions")
    if m_draws < 1:
        raise InputError("analytic MCS", "m_draws", f"{m_draws} < 1", "the max needs at least one draw")
    return (k_dim - 1) / 2


def _log_single_cdf(t: np.ndarray, a: float) -> np.ndarray:
    """log F(t) of one cosine, accurate also where F is within 1e-16 of 1 (via log1p(-sf)),
    which is where F^M with M in the tens of thousands lives."""
    x = np.clip((np.asarray(t, dtype=np.float64) + 1) / 2, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        upper = np.log1p(-stats.beta.sf(x, a, a))
        lower = stats.beta.logcdf(x, a, a)
    return np.where(x > 0.5, upper, lower)


def analytic_mcs_cdf(t: Float[np.ndarray, "*s"] | float, k_dim: int,
                     m_draws: int) -> Float[np.ndarray, "*s"]:
    """P(MCS <= t) = F(t)^M for the max of ``m_draws`` cosines with random directions in
    ``k_dim`` dimensions, computed as exp(M log F) so large M does not underflow."""
    a = _check_analytic(k_dim, m_draws)
    return np.exp(m_draws * _log_single_cdf(t, a))


def analytic_mcs_pdf(t: Float[np.ndarray, "*s"] | float, k_dim: int,
                     m_draws: int) -> Float[np.ndarray, "*s"]:
    """Density M f(t) F(t)^(M-1) of that maximum on [-1, 1] (0 outside), in log space."""
    a = _check_analytic(k_dim, m_draws)
    t = np.asarray(t, dtype=np.float64)
    x = (t + 1) / 2
    inside = (t > -1) & (t < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The factor 1/2 is dx/dt.
        log_pdf = (math.log(m_draws) + stats.beta.logpdf(np.clip(x, 0, 1), a, a) - math.log(2)
                   + (m_draws - 1) * _log_single_cdf(t, a))
        out = np.where(inside, np.exp(log_pdf), 0.0)
    return np.nan_to_num(out, nan=0.0)


def analytic_mcs_quantiles(q: Float[np.ndarray, "*s"] | float, k_dim: int,
                           m_draws: int) -> Float[np.ndarray, "*s"]:
    """t with P(MCS <= t) = q: F(t) = q^(1/M), found from the upper tail 1 - q^(1/M) =
    -expm1(log(q) / M) so that q^(1/M) rounding to 1 for large M loses nothing."""
    a = _check_analytic(k_dim, m_draws)
    q = np.asarray(q, dtype=np.float64)
    if ((q < 0) | (q > 1)).any():
        raise InputError("analytic_mcs_quantiles", "q", "outside [0, 1]", "pass probabilities")
    with np.errstate(divide="ignore"):
        tail = -np.expm1(np.log(q) / m_draws)
    return 2 * stats.beta.isf(tail, a, a) - 1


# --- Comparing distributions --------------------------------------------------------------------


def emd_matrix(distributions: Mapping[str, Float[np.ndarray, " _"]], *,
               below: float | None = None) -> pl.DataFrame:
    """Pairwise earth mover's (Wasserstein-1) distances between named samples of MCS values:
    a ``name`` column, then one column per distribution in the given order (symmetric, zero
    diagonal). ``below``: keep only values < below first (the post's MCS < 0.5); a sample
    left empty gives NaN distances."""
    names = list(distributions)
    if "name" in names:
        raise InputError("emd_matrix", "name", "is the label column's name", "rename that distribution")
    samples = []
    for name in names:
        x = np.asarray(distributions[name], dtype=np.float64).ravel()
        if np.isnan(x).any():
            raise InputError("emd_matrix", name, "contains NaN", "drop missing MCS values first")
        samples.append(x if below is None else x[x < below])
    dist = np.zeros((len(names), len(names)))
    for i, j in itertools.combinations(range(len(names)), 2):
        if samples[i].size and samples[j].size:
            dist[i, j] = dist[j, i] = stats.wasserstein_distance(samples[i], samples[j])
        else:
            dist[i, j] = dist[j, i] = np.nan
    for i, x in enumerate(samples):
        dist[i, i] = 0.0 if x.size else np.nan
    return pl.DataFrame({"name": names, **{n: dist[:, k] for k, n in enumerate(names)}},
                        schema={"name": pl.String, **{n: pl.Float64 for n in names}})
