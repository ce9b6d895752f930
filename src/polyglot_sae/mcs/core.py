"""Maximum cosine similarity (MCS) between SAE dictionaries, after the bimodality post.

A feature's MCS against a dictionary B is the largest cosine between its decoder direction and
any of B's. Scored against a larger dictionary, learned features split into a high-MCS mode
(found again, near 1) and a low-MCS mode that looks like random directions; here:

- ``max_cosine_similarity``: MCS and best match of every row of A against B, in bounded memory;
- the random baseline: Gaussian dictionaries of the same shapes (``random_baseline_mcs``) and the
  analytic distribution of the post's footnote (``analytic_mcs_cdf`` / ``_pdf`` / ``_quantiles``);
- earth mover's distances between MCS distributions (``emd_matrix``), the high/low split
  (``mcs_split``) and the per-width table (``ladder_table``);
- ``bilingual_vs_mcs``: are the significant bilingual features more often high-MCS?
- ``decoder_directions`` / ``mcs_between_saes``: the same for SAE folders, to Parquet.

Threshold. The post splits at MCS = 0.5: "we will consider just the part of the distribution
where MCS<.5" and "throw out all data above a cutoff of MCS=.5"; its low mode (random-like) sits
near 0.3 and its high mode near 1 for a 128-dimensional space. ``McsConfig.threshold`` defaults
to 0.5. In wider spaces the random mode moves towards 0 (about 0.09 for 2,304 dimensions
against 16,384 features), so 0.5 stays well above it; ``analytic_mcs_quantiles(0.999, d, m)``
gives a threshold tied to the random baseline instead, for a config that wants one.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from jaxtyping import Bool, Float, Float32, Int64
from scipy import stats

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.errors import InputError

if TYPE_CHECKING:
    import torch

# Bytes of one float32 similarity block (A rows x B rows) computed at a time.
DEFAULT_BLOCK_BYTES = 256 * 2**20
# When B is split too, a block keeps at least this many of A's rows, so the per-row work
# (normalising, reading back the maxima) is amortised over a wide enough matmul.
_MIN_BLOCK_ROWS = 256
MCS_SCHEMA = {"feature_id": pl.UInt32, "mcs": pl.Float32, "match_id": pl.UInt32}


@dataclass(frozen=True)
class McsConfig:
    """MCS between dictionaries, its random baseline and the high/low split."""

    # Features with MCS >= threshold are high-MCS (found again), the rest low-MCS. 0.5 is the
    # post's cutoff between its random-like mode (~0.3) and its found-again mode (~1).
    threshold: float = 0.5
    # Rows of A per similarity block; None sizes blocks to block_bytes (4,096 rows against
    # 16,384 features at the default). Changes memory and speed, never the result.
    chunk_rows: int | None = None
    # Target size of one float32 similarity block when chunk_rows is None.
    block_bytes: int = DEFAULT_BLOCK_BYTES
    # Seeds of the random Gaussian dictionaries; the post compares four random sets.
    random_seeds: tuple[int, ...] = (0, 1, 2, 3)
    # Histogram bins of the figures (the distributions, not the statistics, use them).
    bins: int = 50
    # cpu, cuda[:i] (falls back to cpu when CUDA is absent) or auto.
    device: str = "cpu"
    # EMD on the low part only (MCS < threshold), as the post does: the question is whether
    # the low mode is random-like, and the high mode has no random counterpart.
    emd_low_only: bool = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [-1, 1], got {self.threshold}")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1 or None, got {self.chunk_rows}")
        if self.block_bytes < 4:
            raise ValueError(f"block_bytes must hold at least one float32, got {self.block_bytes}")
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")


# --- MCS -------------------------------------------------------------------------------------


def block_shape(m: int, n: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[int, int]:
    """(rows of A, rows of B) per similarity block so that one float32 block is at most
    ``block_bytes``: all of B at once unless B alone would leave fewer than 256 rows of A."""
    elems = max(1, block_bytes // 4)
    cols = min(max(n, 1), max(1, elems // _MIN_BLOCK_ROWS))
    rows = min(max(m, 1), max(1, elems // cols))
    return rows, cols


def max_cosine_similarity(
    a: Float[torch.Tensor | np.ndarray, "m d"],
    b: Float[torch.Tensor | np.ndarray, "n d"],
    *,
    chunk_rows: int | None = None,
    chunk_cols: int | None = None,
    device: str = "cpu",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[Float32[np.ndarray, " m"], Int64[np.ndarray, " m"]]:
    """For every row of A (a feature's decoder direction), the largest cosine similarity with
    any row of B, and the index in B of that row.

    Rows are normalised first; a zero row has cosine 0 with everything (never NaN), so a zero
    row of A gets MCS 0 and match 0 when no cosine is positive. Exact ties go to the lowest
    index (torch's max keeps the first; blocks of B merge with a strict >).

    Blocks. A is processed ``chunk_rows`` rows at a time and B ``chunk_cols`` rows at a time
    (defaults: ``block_shape``, all of B and a ~256 MB block). Peak memory beyond the inputs,
    with r = chunk_rows, c = chunk_cols and 4-byte floats::

        on the device:  4 (n d + r d + r c) + 12 r       (unit B, unit A chunk, block, maxima)
        where the input lives:  ~24 r d + 12 m   (a chunk's float64 normalisation, output)

    so 65,536 x 16,384 x 2,304 (GemmaScope 65k against 16k) needs ~151 + 38 + 256 MB on the
    device and ~230 MB beside the input, whatever m is (both on the host for device cpu).

    Precision. Rows are scaled by their largest entry and normalised in float64, rounded to
    float32 unit vectors, and the cosines are float32 matmuls (torch's highest float32
    precision is forced on CUDA, so no TF32): the error is ~sqrt(d) * 6e-8, about 3e-6 for
    d = 2,304, far below any histogram bin. Near-ties may pick either row.

    ``device``: cpu, cuda[:i] or auto; cuda falls back to cpu (with a warning) when absent.
    """
    import torch

    from polyglot_sae.activations.extract import resolve_device

    a_t, b_t = _as_matrix(a, "a"), _as_matrix(b, "b")
    (m, d), (n, d_b) = a_t.shape, b_t.shape
    if d != d_b:
        raise InputError("max_cosine_similarity", "d", f"A has rows of width {d}, B of width {d_b}",
                         "compare dictionaries of the same space (same hook, same d_in)")
    if n == 0:
        raise InputError("max_cosine_similarity", "b", "B has no rows", "pass a non-empty dictionary")
    default_rows, default_cols = block_shape(m, n, block_bytes)
    rows = _positive(chunk_rows, default_rows, "chunk_rows")
    cols = _positive(chunk_cols, default_cols, "chunk_cols")
    dev = torch.device(resolve_device(device))
    best = np.zeros(m, dtype=np.float32)
    match = np.zeros(m, dtype=np.int64)
    with _highest_precision(dev):
        b_unit = torch.empty((n, d), dtype=torch.float32, device=dev)
        for start in range(0, n, rows):
            b_unit[start:start + rows] = _unit_rows(b_t[start:start + rows], "b")
        for start in range(0, m, rows):
            a_unit = _unit_rows(a_t[start:start + rows], "a").to(dev)
            value, index = None, None
            for col in range(0, n, cols):
                v, i = (a_unit @ b_unit[col:col + cols].T).max(dim=1)
                i += col
                if value is None:
                    value, index = v, i
                else:
                    # Strictly greater: on a tie the earlier block (lower index) keeps the match.
                    better = v > value
                    value, index = torch.where(better, v, value), torch.where(better, i, index)
            best[start:start + rows] = value.cpu().numpy()
            match[start:start + rows] = index.cpu().numpy()
    return best, match


def _positive(value: int | None, default: int, name: str) -> int:
    if value is None:
        return default
    if value < 1:
        raise InputError("max_cosine_similarity", name, f"{value} < 1", "pass a positive chunk size")
    return int(value)


def _as_matrix(x: Any, name: str) -> torch.Tensor:
    """A 2-D float tensor sharing memory with ``x`` where possible (float32 and float64
    stay as they are; other dtypes become float32)."""
    import torch

    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        try:
            t = torch.from_numpy(arr)
        except (TypeError, ValueError):
            # Negative strides or a non-native byte order: copy; other dtypes are refused below.
            try:
                t = torch.from_numpy(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")))
            except (TypeError, ValueError) as err:
                raise InputError("max_cosine_similarity", name, f"dtype {arr.dtype}",
                                 "pass real floats") from err
    if t.ndim != 2:
        raise InputError("max_cosine_similarity", name, f"has shape {tuple(t.shape)}",
                         "pass a 2-D (features x d_in) matrix")
    if t.dtype not in (torch.float32, torch.float64):
        if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64, torch.bool)):
            raise InputError("max_cosine_similarity", name, f"dtype {t.dtype}", "pass real floats")
        t = t.to(torch.float32)
    return t


def _unit_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    """float32 unit rows (zero rows stay zero): scaled by the largest entry first, so neither
    tiny nor huge float64 entries under- or overflow, then normalised in float64."""
    import torch

    # Checked chunk by chunk: a mask of the whole input would be another m x d bytes.
    if not bool(torch.isfinite(x).all()):
        raise InputError("max_cosine_similarity", name, "contains NaN or infinite entries",
                         "check the SAE weights (a diverged run?)")
    scale = x.abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    y = (x / scale).to(torch.float64)
    norm = torch.linalg.vector_norm(y, dim=1, keepdim=True)
    return (y / torch.where(norm > 0, norm, torch.ones_like(norm))).to(torch.float32)


@contextlib.contextmanager
def _highest_precision(dev: torch.device) -> Iterator[None]:
    """True float32 matmuls on CUDA for the duration (a caller may have allowed TF32, whose
    10-bit mantissa would blur cosines at the 1e-3 level); restored afterwards."""
    import torch

    if dev.type != "cuda":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


# --- Random baseline ---------------------------------------------------------------------------


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


def mcs_split(mcs: Float[np.ndarray, " m"], threshold: float) -> dict[str, float | int]:
    """Counts and shares of high-MCS (>= threshold) and low-MCS features."""
    mcs = np.asarray(mcs)
    n = int(mcs.size)
    high = int((mcs >= threshold).sum())
    return {"n_features": n, "n_high": high, "n_low": n - high,
            "share_high": high / n if n else math.nan,
            "share_low": (n - high) / n if n else math.nan}


def ladder_table(
    entries: Sequence[tuple[int, int, Float[np.ndarray, " _"]]],
    *,
    random_baselines: Mapping[int, Float[np.ndarray, "s _"]] | None = None,
    config: McsConfig = McsConfig(),
) -> pl.DataFrame:
    """The post's counts and proportions by width: one row per (width, seed, MCS against the
    reference dictionary) entry, sorted by width then seed, with

    - n_features, n_high, n_low, share_high at ``config.threshold``;
    - emd_to_random: mean EMD of the entry's MCS sample to each random-baseline sample of its
      width (``random_baselines[width]``, seeds x features, e.g. ``random_baseline_mcs``);
    - emd_random_to_random: mean EMD between those random samples, the yardstick the post
      reads emd_to_random against (null with fewer than two seeds).

    Both EMDs use only values < threshold when ``config.emd_low_only``; null without a baseline.
    """
    below = config.threshold if config.emd_low_only else None
    rows = []
    for width, seed, mcs in entries:
        row: dict[str, Any] = {"width": int(width), "seed": int(seed),
                               **mcs_split(mcs, config.threshold)}
        row.pop("share_low")
        row["emd_to_random"] = row["emd_random_to_random"] = None
        baseline = None if random_baselines is None else random_baselines.get(int(width))
        if baseline is not None:
            baseline = np.atleast_2d(np.asarray(baseline))
            named = {"learned": mcs, **{f"random{k}": r for k, r in enumerate(baseline)}}
            dist = emd_matrix(named, below=below).drop("name").to_numpy()
            row["emd_to_random"] = _mean_or_none(dist[0, 1:])
            pairs = [dist[i, j] for i, j in itertools.combinations(range(1, len(named)), 2)]
            row["emd_random_to_random"] = _mean_or_none(np.array(pairs))
        rows.append(row)
    schema = {"width": pl.Int64, "seed": pl.Int64, "n_features": pl.Int64, "n_high": pl.Int64,
              "n_low": pl.Int64, "share_high": pl.Float64, "emd_to_random": pl.Float64,
              "emd_random_to_random": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort("width", "seed")


def _mean_or_none(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def bilingual_vs_mcs(
    mcs: Float[np.ndarray, " d_sae"],
    significant: Bool[np.ndarray, " d_sae"],
    alive: Bool[np.ndarray, " d_sae"],
    *,
    threshold: float = McsConfig.threshold,
) -> dict[str, Any]:
    """Are the significant bilingual features more often high-MCS than the other alive ones?

    Among alive features, the 2x2 table (significant x MCS >= threshold) with Fisher's exact
    test (one-sided, 'greater': significant features are enriched in high MCS) and its sample
    odds ratio (sig_high * other_low) / (sig_low * other_high), and a one-sided Mann-Whitney U
    test that significant features' MCS values are stochastically larger (no threshold).

    ``status`` is "ok", or names why the tests could not run ("no alive features", "no
    significant alive features", "no other alive features"); the statistics are then NaN.
    """
    mcs = np.asarray(mcs, dtype=np.float64)
    significant, alive = np.asarray(significant), np.asarray(alive)
    for name, arr in (("significant", significant), ("alive", alive)):
        if arr.dtype != np.bool_:
            raise InputError("bilingual_vs_mcs", name, f"dtype {arr.dtype}", "pass a boolean mask")
        if arr.shape != mcs.shape:
            raise InputError("bilingual_vs_mcs", name, f"shape {arr.shape} != mcs {mcs.shape}",
                             "pass one entry per feature, in feature_id order")
    if np.isnan(mcs[alive]).any():
        raise InputError("bilingual_vs_mcs", "mcs", "NaN for an alive feature",
                         "compute MCS for every feature")
    sig = significant & alive
    other = ~significant & alive
    high = mcs >= threshold
    counts = {"sig_high": int((sig & high).sum()), "sig_low": int((sig & ~high).sum()),
              "other_high": int((other & high).sum()), "other_low": int((other & ~high).sum())}
    n_sig, n_other = int(sig.sum()), int(other.sum())
    out: dict[str, Any] = {
        "threshold": float(threshold), "n_alive": int(alive.sum()), "n_significant": n_sig,
        "n_other": n_other, **counts,
        "share_high_significant": counts["sig_high"] / n_sig if n_sig else math.nan,
        "share_high_other": counts["other_high"] / n_other if n_other else math.nan,
        "median_mcs_significant": float(np.median(mcs[sig])) if n_sig else math.nan,
        "median_mcs_other": float(np.median(mcs[other])) if n_other else math.nan,
        "odds_ratio": math.nan, "fisher_p": math.nan, "mannwhitney_u": math.nan,
        "mannwhitney_p": math.nan,
    }
    if not alive.any():
        out["status"] = "no alive features"
    elif n_sig == 0:
        out["status"] = "no significant alive features"
    elif n_other == 0:
        out["status"] = "no other alive features"
    else:
        out["status"] = "ok"
        table = [[counts["sig_high"], counts["sig_low"]], [counts["other_high"], counts["other_low"]]]
        fisher = stats.fisher_exact(table, alternative="greater")
        mwu = stats.mannwhitneyu(mcs[sig], mcs[other], alternative="greater")
        out.update(odds_ratio=float(fisher.statistic), fisher_p=float(fisher.pvalue),
                   mannwhitney_u=float(mwu.statistic), mannwhitney_p=float(mwu.pvalue))
    return out


# --- SAE folders --------------------------------------------------------------------------------


def decoder_directions(sae_dir: str | Path) -> Float32[np.ndarray, "d_sae d_in"]:
    """W_dec of an sae-lens SAE folder as float32, one row per feature."""
    from polyglot_sae.model import saes

    sae = saes.load_sae(sae_dir)
    w = sae.W_dec.detach().to(device="cpu").float().numpy()
    expected = (int(sae.cfg.d_sae), int(sae.cfg.d_in))
    if w.shape != expected:
        raise InputError(sae_dir, "W_dec", f"shape {w.shape}, expected (d_sae, d_in) = {expected}",
                         "save the SAE with sae-lens (W_dec is d_sae x d_in)")
    return w


def mcs_between_saes(
    sae_dir: str | Path, reference_dir: str | Path, out: str | Path, *,
    config: McsConfig = McsConfig(), provenance: Mapping[str, Any] | None = None,
) -> Path:
    """MCS of every feature of one SAE against another's decoder, written atomically as
    Parquet ``feature_id:u32, mcs:f32, match_id:u32`` (match_id: the reference feature of
    highest cosine), sorted by feature_id, with provenance in the file metadata."""
    from polyglot_sae.activations.extract import resolve_device

    device = resolve_device(config.device)
    w = decoder_directions(sae_dir)
    ref = decoder_directions(reference_dir)
    if w.shape[1] != ref.shape[1]:
        raise InputError(reference_dir, "d_in", f"{ref.shape[1]} != {w.shape[1]} of {sae_dir}",
                         "compare SAEs trained on the same hook of the same model")
    mcs, match = max_cosine_similarity(w, ref, chunk_rows=config.chunk_rows, device=device,
                                       block_bytes=config.block_bytes)
    table = pl.DataFrame({"feature_id": np.arange(w.shape[0], dtype=np.uint32), "mcs": mcs,
                          "match_id": match.astype(np.uint32)}, schema=MCS_SCHEMA)
    meta = {"sae": str(sae_dir), "reference": str(reference_dir), "d_sae": w.shape[0],
            "reference_d_sae": ref.shape[0], "d_in": w.shape[1],
            "device": device, "precision": "float32 matmul of float32 unit rows",
            "threshold": config.threshold, **mcs_split(mcs, config.threshold), **(provenance or {})}
    return write_parquet(table, out, meta, byte_stream_split=["mcs"])


def read_mcs(path: str | Path) -> pl.DataFrame:
    """A table written by ``mcs_between_saes``, checked against its schema."""
    table = pl.read_parquet(path)
    wrong = {c: str(table.schema.get(c)) for c, t in MCS_SCHEMA.items() if table.schema.get(c) != t}
    if wrong:
        raise InputError(path, ", ".join(wrong), f"missing or mistyped ({wrong})",
                         "write the file with mcs_between_saes")
    return table.select(list(MCS_SCHEMA))


@dataclass(frozen=True)
class Dictionary:
    """One SAE of a ladder: dictionaries read at the same hook of the same model."""

    name: str  # the SAE id, or ``w{width}-s{seed}`` for a ladder SAE trained here
    path: str  # its sae-lens folder
    seed: int = 0  # training seed (0 for imported SAEs)


def compare_ladder(dictionaries: Sequence[Dictionary], scored: str, *,
                   config: McsConfig = McsConfig()) -> dict[str, Any]:
    """The post's comparison over a ladder of dictionaries at one hook.

    Every dictionary but the widest is compared with the widest (the reference; ties broken
    by name): MCS, the high/low split and the EMD to random Gaussian dictionaries of the same
    shapes (``config.random_seeds``). The ``scored`` dictionary is also compared with the
    second widest other one, for the scatter. Returns ``ladder`` (``ladder_table`` plus name
    and reference), ``emd`` (pairwise EMDs between every learned and random distribution),
    ``features`` (the scored SAE's ``feature_id, mcs, match_id, mcs_second`` against the
    widest and second widest other dictionaries, named ``first`` and ``second``), and the
    samples the plots need.
    """
    if len(dictionaries) < 2:
        raise InputError("config mcs", "widths", f"{len(dictionaries)} dictionary in the ladder",
                         "list at least one width besides the scored SAE's, or a second SAE "
                         "at the same hook")
    weights = {d.name: decoder_directions(d.path) for d in dictionaries}
    order = sorted(dictionaries, key=lambda d: (-weights[d.name].shape[0], d.name))
    reference = order[0]
    ref_w = weights[reference.name]
    d_in = ref_w.shape[1]
    kwargs = {"chunk_rows": config.chunk_rows, "device": config.device,
              "block_bytes": config.block_bytes}
    mcs, entries, baselines, distributions = {}, [], {}, {}
    for d in order[1:]:
        w = weights[d.name]
        if w.shape[1] != d_in:
            raise InputError(d.path, "d_in", f"{w.shape[1]} != {d_in} of {reference.path}",
                             "put SAEs of one hook of one model in a ladder")
        mcs[d.name], match = max_cosine_similarity(w, ref_w, **kwargs)
        if d.name == scored:
            scored_match = match
        width = w.shape[0]
        if width not in baselines:
            baselines[width] = random_baseline_mcs(width, ref_w.shape[0], d_in,
                                                   config.random_seeds, **kwargs)
            for k, sample in enumerate(baselines[width]):
                distributions[f"random {width} s{config.random_seeds[k]}"] = sample
        entries.append((width, d.seed, mcs[d.name]))
        distributions[d.name] = mcs[d.name]
    ladder = pl.concat([
        ladder_table([entry], random_baselines=baselines, config=config).with_columns(
            name=pl.lit(d.name), reference=pl.lit(reference.name))
        for d, entry in zip(order[1:], entries)
    ]).sort("width", "seed", "name")
    below = config.threshold if config.emd_low_only else None
    out = {"ladder": ladder, "emd": emd_matrix(distributions, below=below),
           "reference": reference.name, "reference_width": ref_w.shape[0], "d_in": d_in,
           "random": baselines, "mcs": mcs}
    # The scored SAE against the widest and second widest other dictionaries (for the widest
    # SAE itself, that is the next ones down: "found again" in a smaller dictionary).
    others = [d for d in order if d.name != scored]
    first, second = others[0], (others[1] if len(others) > 1 else None)
    if scored == reference.name:
        mcs_first, match = max_cosine_similarity(weights[scored], weights[first.name], **kwargs)
    else:
        mcs_first, match = mcs[scored], scored_match
    mcs_second = (max_cosine_similarity(weights[scored], weights[second.name], **kwargs)[0]
                  if second is not None else np.full(mcs_first.size, np.nan, np.float32))
    out["features"] = pl.DataFrame({
        "feature_id": np.arange(mcs_first.size, dtype=np.uint32), "mcs": mcs_first,
        "match_id": match.astype(np.uint32), "mcs_second": mcs_second})
    out["first"], out["second"] = first.name, None if second is None else second.name
    return out
