"""The word level's compiled passes (the method is described in ``polyglot_sae.paired.word_level``).

A shard's word activations are held feature-major: per feature, its rows sorted by word slot,
slots numbered by (pair, language, word), so a feature's rows on one verse pair are adjacent.
The sums pass runs over features in parallel, one feature at a time per thread, and within a
feature over its verse pairs in order: every sum of a feature is accumulated in one fixed
order (bit-identical results whatever the thread count), and a pair's sums are folded into the
feature's bootstrap row while that row is in cache.
"""

from __future__ import annotations

import numba
import numpy as np

# columns of ``counts``
COUNTS = ("cofire", "same", "src_ab", "hit_ab", "other_ab", "src_ba", "hit_ba", "other_ba")
# rows of a feature's bootstrap block ``boot[f]``
SUMS = ("sx", "sxx", "sy", "syy", "sxy")


@numba.njit(parallel=True, cache=True, nogil=True)
def group_words(feature, slot, value, d):  # pragma: no cover - compiled
    """(ptr, slot, value): the rows by feature (CSR ``ptr`` of length d + 1), within a feature
    sorted by slot, one row per (feature, slot) holding the max of its values (a word's
    activation is the max over its tokens). Rows with slot < 0 (no word) are dropped."""
    start = np.zeros(d + 1, np.int64)
    for r in range(feature.size):
        if slot[r] >= 0:
            start[feature[r] + 1] += 1
    for f in range(d):
        start[f + 1] += start[f]
    pos = start[:-1].copy()
    by_slot = np.empty(start[d], np.int64)
    by_value = np.empty(start[d], np.float32)
    for r in range(feature.size):
        if slot[r] >= 0:
            at = pos[feature[r]]
            pos[feature[r]] += 1
            by_slot[at] = slot[r]
            by_value[at] = value[r]
    kept = np.zeros(d + 1, np.int64)
    for f in numba.prange(d):
        a, b = start[f], start[f + 1]
        if b - a > 1:
            idx = np.argsort(by_slot[a:b], kind="mergesort") + a
            by_slot[a:b] = by_slot[idx]
            by_value[a:b] = by_value[idx]
        n = 0
        for r in range(a, b):
            if n and by_slot[a + n - 1] == by_slot[r]:
                by_value[a + n - 1] = max(by_value[a + n - 1], by_value[r])
            else:
                by_slot[a + n] = by_slot[r]
                by_value[a + n] = by_value[r]
                n += 1
        kept[f + 1] = n
    ptr = np.cumsum(kept)
    out_slot = np.empty(ptr[d], np.int64)
    out_value = np.empty(ptr[d], np.float64)
    for f in numba.prange(d):
        n = ptr[f + 1] - ptr[f]
        out_slot[ptr[f]:ptr[f + 1]] = by_slot[start[f]:start[f] + n]
        out_value[ptr[f]:ptr[f + 1]] = by_value[start[f]:start[f] + n]
    return ptr, out_slot, out_value


@numba.njit(cache=True, nogil=True)
def _better(xy, pair, wa, wb, ex_xy, ex_pair, ex_wa, ex_wb, f, i):  # pragma: no cover
    """Does the candidate link come before example i of feature f (xy descending, then pair,
    word a, word b ascending: a total order, so the examples do not depend on row order)?"""
    if xy != ex_xy[f, i]:
        return xy > ex_xy[f, i]
    if pair != ex_pair[f, i]:
        return pair < ex_pair[f, i]
    if wa != ex_wa[f, i]:
        return wa < ex_wa[f, i]
    return wb < ex_wb[f, i]


@numba.njit(cache=True, nogil=True)
def _keep_example(x, y, pair, wa, wb, f, ex_xy, ex_x, ex_y, ex_pair, ex_wa,
                  ex_wb):  # pragma: no cover - compiled
    n = ex_xy.shape[1]
    xy = x * y
    if n == 0 or not _better(xy, pair, wa, wb, ex_xy, ex_pair, ex_wa, ex_wb, f, n - 1):
        return
    i = n - 1
    while i > 0 and _better(xy, pair, wa, wb, ex_xy, ex_pair, ex_wa, ex_wb, f, i - 1):
        ex_xy[f, i], ex_x[f, i], ex_y[f, i] = ex_xy[f, i - 1], ex_x[f, i - 1], ex_y[f, i - 1]
        ex_pair[f, i], ex_wa[f, i], ex_wb[f, i] = ex_pair[f, i - 1], ex_wa[f, i - 1], ex_wb[f, i - 1]
        i -= 1
    ex_xy[f, i], ex_x[f, i], ex_y[f, i] = xy, x, y
    ex_pair[f, i], ex_wa[f, i], ex_wb[f, i] = pair, wa, wb


@numba.njit(parallel=True, cache=True, nogil=True)
def link_sums(ptr, row_slot, row_value, slot_pair, slot_lang, slot_word, la, lb, a_ptr, a_link,
              b_deg, link_wa, link_wb, link_same, pair_id, pair_wrow, m_a, m_b, weights,
              max_words, n_chunks, boot, counts, ex_xy, ex_x, ex_y, ex_pair, ex_wa,
              ex_wb):  # pragma: no cover - compiled
    """Add one shard's sums for languages (la, lb) to ``boot`` (d, 5, B + 1) (the ``SUMS``
    weighted by each verse pair's bootstrap weights, row ``pair_wrow[p]`` of ``weights``),
    ``counts`` (d, 8) (``COUNTS``) and the running top examples ``ex_*`` (d, n).

    Links: ``a_ptr``/``a_link`` list the links of each a-side slot, ``b_deg`` counts each
    b-side slot's links; ``link_wa``/``link_wb`` their words, ``link_same`` their shared-string
    flag. ``m_a``/``m_b``: each pair's word count per side. Features are dealt to
    ``n_chunks`` interleaved chunks (frequent features spread out)."""
    d = ptr.size - 1
    b1 = weights.shape[1]
    for chunk in numba.prange(n_chunks):
        y_of = np.zeros(max_words)
        for f in range(chunk, d, n_chunks):
            i, end = ptr[f], ptr[f + 1]
            while i < end:
                p = slot_pair[row_slot[i]]
                j = i
                while j < end and slot_pair[row_slot[j]] == p:
                    j += 1
                ka = kb = 0
                cy = sy = syy = 0.0
                for r in range(i, j):
                    s = row_slot[r]
                    if slot_lang[s] == lb:
                        kb += 1
                        y = row_value[r]
                        y_of[slot_word[s]] = y
                        cy += b_deg[s]
                        sy += b_deg[s] * y
                        syy += b_deg[s] * y * y
                    elif slot_lang[s] == la:
                        ka += 1
                cx = sx = sxx = sxy = h = same = 0.0
                for r in range(i, j):
                    s = row_slot[r]
                    if slot_lang[s] != la:
                        continue
                    x = row_value[r]
                    for q in range(a_ptr[s], a_ptr[s + 1]):
                        link = a_link[q]
                        cx += 1.0
                        sx += x
                        sxx += x * x
                        y = y_of[link_wb[link]]
                        if y > 0.0:
                            h += 1.0
                            sxy += x * y
                            same += link_same[link]
                            _keep_example(x, y, pair_id[p], link_wa[link], link_wb[link], f,
                                          ex_xy, ex_x, ex_y, ex_pair, ex_wa, ex_wb)
                for r in range(i, j):
                    if slot_lang[row_slot[r]] == lb:
                        y_of[slot_word[row_slot[r]]] = 0.0
                i = j
                if cx == 0.0 and cy == 0.0:
                    continue
                counts[f, 0] += h
                counts[f, 1] += same
                # align_lift: c source words firing on a link, h with the aligned target word
                # firing, k of the target verse's m words firing: the other target words'
                # share summed over the c firings is (c k - h) / (m - 1)
                counts[f, 2] += cx
                counts[f, 3] += h
                if m_b[p] > 1:
                    counts[f, 4] += (cx * kb - h) / (m_b[p] - 1)
                counts[f, 5] += cy
                counts[f, 6] += h
                if m_a[p] > 1:
                    counts[f, 7] += (cy * ka - h) / (m_a[p] - 1)
                w = pair_wrow[p]
                for t in range(b1):
                    wt = np.float64(weights[w, t])
                    boot[f, 0, t] += sx * wt
                    boot[f, 1, t] += sxx * wt
                    boot[f, 2, t] += sy * wt
                    boot[f, 3, t] += syy * wt
                    boot[f, 4, t] += sxy * wt
