"""The paired method's compiled passes over the rows, and the statistics from their sums (the
method is described in ``polyglot_sae.paired.stats``).

Every pass runs over features in parallel, one thread per feature, and within a feature over
each language's rows in pair-slot order, merging two languages' rows to find their co-fired
pairs. A feature's sums are accumulated in one fixed order, so results are bit-identical from
run to run whatever the thread count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import polars as pl
from jaxtyping import Float64, Int64

# A side's variance below this fraction of its mean square is rounding, not variance.
_VAR_RTOL = 1e-12


class Sums(NamedTuple):
    """Per feature, the exact (unweighted) sums of the method, float64."""

    count: Int64[np.ndarray, "d k"]  # pairs where each language fires
    s1: Float64[np.ndarray, "d k"]  # Σ a per language
    s2: Float64[np.ndarray, "d k"]  # Σ a²
    sl: Float64[np.ndarray, "d k k"]  # [f, L, j]: Σ a_L len_j over L's rows
    cof: Int64[np.ndarray, "d p"]  # co-fired pairs per language pair (A, B)
    cross: Float64[np.ndarray, "d p"]  # Σ a b over them
    lex: Float64[np.ndarray, "d p 6"]  # lexical co-fired: n, Σa, Σa², Σb, Σb², Σab
    psum: Float64[np.ndarray, "d 5"]  # L0 on P's pairs: Σa, Σa²; P: Σb, Σb²; Σab

    @classmethod
    def empty(cls, d: int, k: int, p: int) -> Sums:
        return cls(np.zeros((d, k), np.int64), np.zeros((d, k)), np.zeros((d, k)),
                   np.zeros((d, k, k)), np.zeros((d, p), np.int64), np.zeros((d, p)),
                   np.zeros((d, p, 6)), np.zeros((d, 5)))


@numba.njit(cache=True, nogil=True)
def pair_slot(pair, ids, table):  # pragma: no cover - compiled
    """The slot of a pair id (its rank in the sorted ``ids``), -1 when not a scored pair:
    through the dense lookup ``table`` when there is one, else by binary search."""
    if table.size:
        return table[pair] if pair < table.size else -1
    at = np.searchsorted(ids, pair)
    return at if at < ids.size and ids[at] == pair else -1


@numba.njit(cache=True, nogil=True)
def group_rows(feature, pair, value, token, pos, ids, table, out_slot, out_value,
               out_token):  # pragma: no cover - compiled
    """Counting sort of a batch of one side's rows by feature (stable) into the out arrays:
    feature f's next row goes to ``pos[f]``, which advances (so batches can follow one
    another), its pair id turned into a slot on the way. Returns the number of rows whose
    pair is not scored."""
    unknown = 0
    for r in range(feature.size):
        s = pair_slot(pair[r], ids, table)
        if s < 0:
            unknown += 1
            continue
        at = pos[feature[r]]
        pos[feature[r]] += 1
        out_slot[at] = s
        out_value[at] = value[r]
        if token.size:
            out_token[at] = token[r]
    return unknown


@numba.njit(parallel=True, cache=True, nogil=True)
def order_within(start, slot, value, token):  # pragma: no cover - compiled
    """Sort each (side, feature)'s rows by slot where the table was not in pair order; True
    when one has two rows on one pair."""
    k, d = start.shape[0], start.shape[1] - 1
    dup = np.zeros(k * d, np.bool_)
    for g in numba.prange(k * d):
        a, b = start[g // d, g % d], start[g // d, g % d + 1]
        ordered = True
        for r in range(a + 1, b):
            if slot[r] <= slot[r - 1]:
                ordered = False
                break
        if ordered:
            continue
        idx = np.argsort(slot[a:b], kind="mergesort") + a
        slot[a:b] = slot[idx]
        value[a:b] = value[idx]
        if token.size:
            token[a:b] = token[idx]
        for r in range(a + 1, b):
            if slot[r] == slot[r - 1]:
                dup[g] = True
    return dup.any()


@numba.njit(parallel=True, cache=True, nogil=True)
def exact_sums(start, slot, value, token, pa, pb, lex_keys, use_lex, lens, use_len, para,
               of_lang, in_para, count, s1, s2, sl, cof, cross, lex,
               psum):  # pragma: no cover - compiled
    """Fill ``Sums`` (the trailing arrays). Sides are rows of ``start`` (languages, then the
    paraphrase at row ``para`` when >= 0). A co-fired row is lexical when its two tokens are
    one id or their combination is in the sorted ``lex_keys``."""
    d, k = count.shape
    for f in numba.prange(d):
        for lang in range(k):
            for r in range(start[lang, f], start[lang, f + 1]):
                a = np.float64(value[r])
                count[f, lang] += 1
                s1[f, lang] += a
                s2[f, lang] += a * a
                if use_len:
                    for j in range(k):
                        sl[f, lang, j] += a * lens[j, slot[r]]
        for p in range(pa.size):
            i, i_end = start[pa[p], f], start[pa[p], f + 1]
            j, j_end = start[pb[p], f], start[pb[p], f + 1]
            while i < i_end and j < j_end:
                if slot[i] < slot[j]:
                    i += 1
                elif slot[i] > slot[j]:
                    j += 1
                else:
                    a, b = np.float64(value[i]), np.float64(value[j])
                    cof[f, p] += 1
                    cross[f, p] += a * b
                    if use_lex:
                        hit = token[i] == token[j]
                        if not hit and lex_keys.size:
                            key = (np.int64(token[i]) << 32) | np.int64(token[j])
                            at = np.searchsorted(lex_keys, key)
                            hit = at < lex_keys.size and lex_keys[at] == key
                        if hit:
                            lex[f, p, 0] += 1.0
                            lex[f, p, 1] += a
                            lex[f, p, 2] += a * a
                            lex[f, p, 3] += b
                            lex[f, p, 4] += b * b
                            lex[f, p, 5] += a * b
                    i += 1
                    j += 1
        if para >= 0:
            i, i_end = start[of_lang, f], start[of_lang, f + 1]
            j, j_end = start[para, f], start[para, f + 1]
            for r in range(i, i_end):
                if in_para[slot[r]]:
                    a = np.float64(value[r])
                    psum[f, 0] += a
                    psum[f, 1] += a * a
            for r in range(j, j_end):
                b = np.float64(value[r])
                psum[f, 2] += b
                psum[f, 3] += b * b
            while i < i_end and j < j_end:
                if slot[i] < slot[j]:
                    i += 1
                elif slot[i] > slot[j]:
                    j += 1
                else:
                    psum[f, 4] += np.float64(value[i]) * np.float64(value[j])
                    i += 1
                    j += 1


@numba.njit(cache=True, nogil=True)
def _accumulate(slot, value, lo, hi, weights, m):  # pragma: no cover - compiled
    """m[c, b] += w_b a^(c+1) over rows lo..hi-1 (c = 0..3: raw moments to the fourth)."""
    m0, m1, m2, m3 = m[0], m[1], m[2], m[3]
    for r in range(lo, hi):
        a = np.float64(value[r])
        a2 = a * a
        a3, a4 = a2 * a, a2 * a2
        w = weights[slot[r]]
        for b in range(w.size):
            x = np.float64(w[b])
            m0[b] += x * a
            m1[b] += x * a2
            m2[b] += x * a3
            m3[b] += x * a4


@numba.njit(cache=True, nogil=True)
def _cross(slot, value, i, i_end, j, j_end, weights, c):  # pragma: no cover - compiled
    """c[:, b] += w_b (ab, a²b, ab², a²b², a³b, ab³) over the co-fired rows of rows i..i_end-1
    and j..j_end-1."""
    c0, c1, c2, c3, c4, c5 = c[0], c[1], c[2], c[3], c[4], c[5]
    while i < i_end and j < j_end:
        if slot[i] < slot[j]:
            i += 1
        elif slot[i] > slot[j]:
            j += 1
        else:
            a, b = np.float64(value[i]), np.float64(value[j])
            ab = a * b
            t = (ab, ab * a, ab * b, ab * ab, ab * a * a, ab * b * b)
            w = weights[slot[i]]
            for r in range(w.size):
                x = np.float64(w[r])
                c0[r] += x * t[0]
                c1[r] += x * t[1]
                c2[r] += x * t[2]
                c3[r] += x * t[3]
                c4[r] += x * t[4]
                c5[r] += x * t[5]
            i += 1
            j += 1


@numba.njit(cache=True, nogil=True)
def _rho_se(ma, mb, c, total):  # pragma: no cover - compiled
    """Per replicate, weighted Pearson r, its delta-method standard error, and whether both
    sides have variance."""
    nb = total.size
    r, se, ok = np.zeros(nb), np.zeros(nb), np.zeros(nb, np.bool_)
    for b in range(nb):
        w = total[b]
        if w <= 0:
            continue
        ua, ub = ma[0, b] / w, mb[0, b] / w
        a2, a3, a4 = ma[1, b] / w, ma[2, b] / w, ma[3, b] / w
        b2, b3, b4 = mb[1, b] / w, mb[2, b] / w, mb[3, b] / w
        ab, a2b, ab2 = c[0, b] / w, c[1, b] / w, c[2, b] / w
        a2b2, a3b, ab3 = c[3, b] / w, c[4, b] / w, c[5, b] / w
        m20, m02 = a2 - ua * ua, b2 - ub * ub
        if m20 <= _VAR_RTOL * a2 or m02 <= _VAR_RTOL * b2:
            continue
        ok[b] = True
        m11 = ab - ua * ub
        rho = min(1.0, max(-1.0, m11 / math.sqrt(m20 * m02)))
        m40 = a4 - 4 * ua * a3 + 6 * ua * ua * a2 - 3 * ua ** 4
        m04 = b4 - 4 * ub * b3 + 6 * ub * ub * b2 - 3 * ub ** 4
        m22 = (a2b2 - 2 * ub * a2b + ub * ub * a2 - 2 * ua * ab2 + 4 * ua * ub * ab
               + ua * ua * b2 - 3 * ua * ua * ub * ub)
        m31 = a3b - ub * a3 - 3 * ua * a2b + 3 * ua * ub * a2 + 3 * ua * ua * ab - 3 * ua ** 3 * ub
        m13 = ab3 - ua * b3 - 3 * ub * ab2 + 3 * ua * ub * b2 + 3 * ub * ub * ab - 3 * ub ** 3 * ua
        # Var of the influence function x y - r (x² + y²) / 2, x and y standardised.
        v = (m22 / (m20 * m02)
             - rho * (m31 / (m20 ** 1.5 * m02 ** 0.5) + m13 / (m20 ** 0.5 * m02 ** 1.5))
             + rho * rho / 4 * (m40 / m20 ** 2 + m04 / m02 ** 2 + 2 * m22 / (m20 * m02)))
        # v is dimensionless; below _VAR_RTOL it is the rounding of an exact 0 (all the
        # co-fired mass on one pair, say), and a rounding-sized se would blow t* up.
        r[b], se[b] = rho, math.sqrt(v / w) if v > _VAR_RTOL else 0.0
    return r, se, ok


@numba.njit(cache=True, nogil=True)
def _order_stat(sorted_values, q, upper):  # pragma: no cover - compiled
    """The ceil((B+1) q)-th (upper) or floor((B+1) q)-th of B sorted values, clamped."""
    n = sorted_values.size
    x = (n + 1) * q
    rank = math.ceil(x - 1e-9) if upper else math.floor(x + 1e-9)
    return sorted_values[min(max(rank, 1), n) - 1]


@numba.njit(cache=True, nogil=True)
def _lower_bound(r, se, ok, level):  # pragma: no cover - compiled
    """min(bootstrap-t bound, percentile bound) from replicate 0 (the sample) and 1..B."""
    n = r.size - 1
    rep, t = np.empty(n), np.empty(n)
    m = 0
    for b in range(1, n + 1):
        rep[b - 1] = r[b] if ok[b] else 0.0
        # A replicate without a standard error (no variance, or all its co-fired mass on one
        # pair) says nothing about the studentised spread: it is left out of t*.
        if ok[b] and se[b] > 0:
            t[m] = (r[b] - r[0]) / se[b]
            m += 1
    rep.sort()
    bound = _order_stat(rep, 1.0 - level, False)
    # The bootstrap-t bound needs most replicates and a standard error of its own; where the
    # sample has none (a feature co-firing on one pair), the percentile bound stands alone.
    if se[0] > 0 and 2 * m >= n:
        t_hi = _order_stat(np.sort(t[:m]), level, True)
        bound = min(bound, r[0] - t_hi * se[0])
    return max(-1.0, bound)


@numba.njit(parallel=True, cache=True, nogil=True)
def bootstrap(start, slot, value, k, pa, pb, weights, total, para, of_lang, in_para, total_para,
              level, out):  # pragma: no cover - compiled
    """out[0] = rho_lo, out[1:3] = the ratio's interval, per feature (NaN where undefined);
    the first k rows of ``start`` are the languages, row ``para`` (if >= 0) the paraphrase."""
    nb, d = weights.shape[1], out.shape[1]
    for f in numba.prange(d):
        mom = np.zeros((k, 4, nb))
        for lang in range(k):
            _accumulate(slot, value, start[lang, f], start[lang, f + 1], weights, mom[lang])
        lo, defined = np.inf, True
        rmin = np.full(nb, np.inf)
        for p in range(pa.size):
            c = np.zeros((6, nb))
            _cross(slot, value, start[pa[p], f], start[pa[p], f + 1], start[pb[p], f],
                   start[pb[p], f + 1], weights, c)
            r, se, ok = _rho_se(mom[pa[p]], mom[pb[p]], c, total)
            if not ok[0]:
                defined = False
                break
            lo = min(lo, _lower_bound(r, se, ok, level))
            for b in range(nb):
                rmin[b] = min(rmin[b], r[b] if ok[b] else 0.0)
        if not defined:
            continue
        out[0, f] = lo
        if para < 0:
            continue
        m0, mp, c = np.zeros((4, nb)), np.zeros((4, nb)), np.zeros((6, nb))
        for r in range(start[of_lang, f], start[of_lang, f + 1]):
            if in_para[slot[r]]:
                _accumulate(slot, value, r, r + 1, weights, m0)
        _accumulate(slot, value, start[para, f], start[para, f + 1], weights, mp)
        _cross(slot, value, start[of_lang, f], start[of_lang, f + 1], start[para, f],
               start[para, f + 1], weights, c)
        rp, _, okp = _rho_se(m0, mp, c, total_para)
        if not okp[0] or rp[0] == 0:
            continue
        ratio = np.empty(nb - 1)
        n = 0
        for b in range(1, nb):
            if okp[b] and rp[b] != 0:
                ratio[n] = rmin[b] / rp[b]
                n += 1
        if n:
            kept = np.sort(ratio[:n])
            out[1, f] = _order_stat(kept, (1.0 - level) / 2, False)
            out[2, f] = _order_stat(kept, (1.0 + level) / 2, True)


def pearson(n: float | np.ndarray, sa: np.ndarray, qa: np.ndarray, sb: np.ndarray,
             qb: np.ndarray, x: np.ndarray) -> Float64[np.ndarray, " d"]:
    """Pearson's r from sums over n pairs (zeros included); NaN where a side has no variance."""
    with np.errstate(divide="ignore", invalid="ignore"):
        va, vb = qa / n - (sa / n) ** 2, qb / n - (sb / n) ** 2
        r = (x / n - sa * sb / n ** 2) / np.sqrt(va * vb)
        bad = (va <= _VAR_RTOL * qa / n) | (vb <= _VAR_RTOL * qb / n) | ~(np.asarray(n) > 0)
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0))


def _partial(s: Sums, a: int, b: int, p: int, n: int,
             lens: Float64[np.ndarray, "k n"]) -> Float64[np.ndarray, " d"]:
    """Partial correlation of a and b given (len_a, len_b): residual covariances after the
    least-squares regression on (1, len_a, len_b), from the 4x4 covariance matrix."""
    ma, mb = s.s1[:, a] / n, s.s1[:, b] / n
    m_len = lens[[a, b]].mean(axis=1)
    c_ll = np.cov(lens[[a, b]], bias=True)
    # Pseudo-inverse: identical or constant lengths are collinear, and the projection onto
    # their span is what a least-squares fit (numpy.linalg.lstsq) would remove.
    inv = np.linalg.pinv(c_ll, rcond=1e-10, hermitian=True)
    c_al = s.sl[:, a][:, [a, b]] / n - ma[:, None] * m_len
    c_bl = s.sl[:, b][:, [a, b]] / n - mb[:, None] * m_len
    va = s.s2[:, a] / n - ma ** 2 - np.einsum("fi,ij,fj->f", c_al, inv, c_al)
    vb = s.s2[:, b] / n - mb ** 2 - np.einsum("fi,ij,fj->f", c_bl, inv, c_bl)
    cab = s.cross[:, p] / n - ma * mb - np.einsum("fi,ij,fj->f", c_al, inv, c_bl)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cab / np.sqrt(va * vb)
    bad = (va <= _VAR_RTOL * s.s2[:, a] / n) | (vb <= _VAR_RTOL * s.s2[:, b] / n)
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0))


def min_over(columns: list[np.ndarray]) -> np.ndarray:
    """Minimum over language pairs; NaN when any pair's value is (the feature is undefined)."""
    stack = np.stack(columns)
    return np.where(np.isnan(stack).any(axis=0), np.nan, stack.min(axis=0))


def assemble(s: Sums, bounds: Float64[np.ndarray, "3 d"], *, langs: list[str], n_pairs: int,
             lens: Float64[np.ndarray, "k n"], n_para: int, use_lex: bool,
             use_para: bool) -> pl.DataFrame:
    """The statistics table (columns in the order of the module docstring of ``stats``)."""
    d, k = s.count.shape
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    nan = np.full(d, np.nan)
    rho = min_over([pearson(n_pairs, s.s1[:, a], s.s2[:, a], s.s1[:, b], s.s2[:, b],
                              s.cross[:, p]) for p, (a, b) in enumerate(pairs)])
    rho_len = (min_over([_partial(s, a, b, p, n_pairs, lens) for p, (a, b) in enumerate(pairs)])
               if lens.shape[1] else nan)
    lex = rho_nonlex = nan
    if use_lex:
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.stack([np.where(s.cross[:, p] > 0, s.lex[:, p, 5] / s.cross[:, p],
                                       np.nan) for p in range(len(pairs))])
        lex = np.where(np.isnan(share).all(axis=0), np.nan, np.nanmax(
            np.where(np.isnan(share), -np.inf, share), axis=0))
        rho_nonlex = min_over([pearson(
            n_pairs - s.lex[:, p, 0], s.s1[:, a] - s.lex[:, p, 1], s.s2[:, a] - s.lex[:, p, 2],
            s.s1[:, b] - s.lex[:, p, 3], s.s2[:, b] - s.lex[:, p, 4],
            s.cross[:, p] - s.lex[:, p, 5]) for p, (a, b) in enumerate(pairs)])
    rho_para = ratio = nan
    if use_para:
        rho_para = pearson(n_para, *s.psum.T)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(rho_para != 0, rho / rho_para, np.nan)

    means = s.s1 / n_pairs
    others = (means.sum(axis=1, keepdims=True) - means) / (k - 1)
    nu = means - others
    dead = (s.count == 0).all(axis=1)
    nu_lang = np.asarray(langs, dtype=object)[nu.argmax(axis=1)]
    nu_lang[dead] = None
    with np.errstate(divide="ignore", invalid="ignore"):
        share_l = means / means.sum(axis=1, keepdims=True)
    columns = {"feature_id": np.arange(d, dtype=np.uint32), "dead": dead}
    columns |= {f"n_fire_{lang}": s.count[:, i].astype(np.uint32) for i, lang in enumerate(langs)}
    columns |= {"n_cofire": s.cof.min(axis=1).astype(np.uint32), "rho": rho,
                "rho_lo": bounds[0], "rho_len": rho_len, "nu_max": nu.max(axis=1),
                "nu_lang": pl.Series(nu_lang.tolist(), dtype=pl.String)}
    columns |= {f"lang_share_{lang}": share_l[:, i] for i, lang in enumerate(langs)}
    columns |= {"lex": lex, "rho_nonlex": rho_nonlex, "rho_para": rho_para, "ratio": ratio,
                "ratio_lo": bounds[1], "ratio_hi": bounds[2]}
    return pl.DataFrame(columns, nan_to_null=True)
