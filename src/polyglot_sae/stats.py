"""Multiple testing and the one significance rule every stage and report uses."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float64

# A feature is significant when its Benjamini-Hochberg q-value is below this (false discovery
# rate 5%); reports, pages, sweeps and the MCS test read it from here.
ALPHA = 0.05


def bh_qvalues(p: Float64[np.ndarray, " m"]) -> Float64[np.ndarray, " m"]:
    """Benjamini-Hochberg adjusted p-values: q_(i) = min over j >= i of p_(j) * m / j, capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    # Step-up: a p-value is rejected whenever a larger one is, so q takes the running minimum
    # from the largest p down.
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(p.size)
    out[order] = np.minimum(q, 1.0)
    return out
