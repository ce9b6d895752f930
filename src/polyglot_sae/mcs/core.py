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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from jaxtyping import Float, Float32, Int64

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

    from polyglot_sae.device import resolve_device

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
