"""A permutation null for the bilingual score: would a feature look as bilingual if the pairing
between the languages meant nothing?

The null re-pairs the sentences: each permutation relabels the pairs of every language but the
first (``langs[0]`` stays put) with its own independent random permutation of the ``n_pairs``
pair slots. Slots are the pair ids present in the table in increasing order, 0..m-1, then
m..n_pairs-1 for the pairs on which nothing fires in any language, so silent pairs are shuffled
in too. ``permutation_stream`` yields the permutations in the order they are used (a test can
replay them on the table).

Statistic. Re-pairing leaves every language's distribution over pairs as it was, so it changes
neither ``idaf`` nor ``beta``: within a feature ``bi_score`` moves with the divergence alone, and
the statistic is the ``jsd`` column (lower = more bilingual), computed with the method's own
arithmetic (for ``seed`` its global rescale, KL(M||P) and division by n_pairs). With N
permutations and G of them at least as bilingual (``jsd_perm <= jsd_obs``)::

    p = (1 + G) / (N + 1)         never 0; resolution 1 / (N + 1)

Sequential early stopping (Besag & Clifford 1991). A feature stops once ``early_stop_hits = h``
permutations have matched or beaten it; if that happens at permutation L <= N, its p is ``h / L``
(>= h / N, so clearly not small; Besag and Clifford show this p is still valid). Features that
never collect h hits run all N permutations and get the formula above, so every p below h / N is
exactly the p of a full run on the same permutations. h = 0 never stops. ``n_permutations`` in
the output says how many permutations each feature used.

Multiple testing: q-values are Benjamini-Hochberg adjusted p-values over the features alive in
every language; dead features get neither p nor q.

How it stays sparse and fast. Nothing pairs x features is ever built. A feature's divergence
is a sum over pairs of a term of the languages' log-probabilities on that pair, and re-pairing
changes no language's distribution, so each feature's per-language log-partition (logsumexp
over pairs) and every row's log-probability are computed once. Split the sum: the pairs where
at most one language fires, counted as if no two languages ever shared a pair, give a part that
the pairing does not change; the rest, D, is the sum over the pairs where two or more languages
fire of (their joint term - the lone-pair terms of those rows + the silent-pair terms of the
slots they free). So ``jsd = const + D`` per feature, only D is recomputed per permutation, and
the comparison is on D (the constant cancels, and with it its rounding). The cost is a lookup
per row of the first language and permutation plus a term per shared pair, and early stopping
keeps most features to a few dozen permutations. To find shared pairs, features are processed a
few at a time: their rows in each language are marked in a small (features x n_pairs) scratch
index, and the first language's rows look up their permuted partners there. For two languages
the terms take a closed form with one logarithm per shared pair (rounding absolute, relative to
the pair's probability, which is all a comparison of D's needs); more languages use scoring's.

Ties: a permuted D within 1e-9 of the observed one, relative to the feature's summed lone-pair
and silent terms, counts as a hit (the same alignment summed in another order differs in the
last bits); this can only raise p.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numba
import numpy as np
import polars as pl
from jaxtyping import Float64, Int32, Int64

from polyglot_sae.stats import bh_qvalues
from polyglot_sae.score.bilingual import (Rows, ScoreConfig, check_pairs, check_request, feature_chunks, load_rows,
                      log_partitions, logit_rescale, pair_divergence, row_logits, score_rows)

# A permuted D within this fraction of the feature's divergence terms (the sum of its lone-pair
# and silent terms) of the observed D is a tie: the same alignment summed in another order
# differs in the last bits. Ties count as hits, which can only raise p.
_TIE_RTOL = 1e-9
# Entries (permutations x rows) looked up in one go by the numpy path (3+ languages): small
# enough that a chunk's temporaries stay in cache, large enough to amortise numpy's calls.
_CHUNK_ENTRIES = 1 << 15
# Rows (all languages) of the features processed together, unless one feature alone has more.
_GROUP_ROWS = 1 << 18
# Scratch index entries (features x n_pairs x languages, int32, 8 MB), reused for every group;
# a smaller index is faster to look up in (it stays in cache).
_MARKER_ENTRIES = 1 << 21
# Permutations per block: all running features share a block's permutations and a feature that
# stops early wastes the rest of its block, so blocks stay small; the first is the smallest
# since most features stop within a few dozen permutations.
_FIRST_BLOCK = 16
_MAX_BLOCK = 32
_LN2 = float(np.log(2))
_TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class NullConfig:
    """The permutation null; see the module docstring."""

    # Number of re-pairings N (0: none). p is resolved down to 1 / (N + 1).
    permutations: int = 1000
    # Seed of numpy's default_rng that draws the permutations: same seed, same p-values.
    seed: int = 0
    # A feature stops after this many permutations at least as bilingual as the observed
    # pairing, with p = hits / permutations done (Besag & Clifford); 0 runs all N for everyone.
    early_stop_hits: int = 10

    def __post_init__(self) -> None:
        if self.permutations < 0:
            raise ValueError(f"permutations must be >= 0, got {self.permutations}")
        if self.early_stop_hits < 0:
            raise ValueError(f"early_stop_hits must be >= 0, got {self.early_stop_hits}")


def permutation_stream(n_pairs: int, n_langs: int,
                       seed: int) -> Iterator[Int64[np.ndarray, "k_minus_1 n_pairs"]]:
    """The re-pairings in the order the null uses them, without end: row L-1 of each array maps
    language L's pair slot s to its new slot ``perm[L - 1, s]`` (language 0 stays put)."""
    rng = np.random.default_rng(seed)
    while True:
        yield np.stack([rng.permutation(n_pairs) for _ in range(n_langs - 1)])


def permutation_pvalues(maxacts: pl.DataFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str],
                        score_config: ScoreConfig, null_config: NullConfig) -> pl.DataFrame:
    """The permutation null of every feature 0..d_sae-1: ``feature_id:u32, p_value:f64,
    q_value:f64, n_permutations:u32`` sorted by feature_id; p and q are null (and
    n_permutations 0) for features dead in some language."""
    langs = check_request(langs, n_pairs, score_config)
    return _null(load_rows(maxacts, langs, d_sae), n_pairs=n_pairs, d_sae=d_sae,
                 method=score_config.method, config=null_config)


def score_with_null(maxacts: pl.DataFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str],
                    score_config: ScoreConfig, null_config: NullConfig) -> pl.DataFrame:
    """``score_features``'s table with ``p_value`` and ``q_value`` appended (the table is read
    once for both)."""
    langs = check_request(langs, n_pairs, score_config)
    rows = load_rows(maxacts, langs, d_sae)
    scores = score_rows(rows, n_pairs=n_pairs, d_sae=d_sae, config=score_config)
    null = _null(rows, n_pairs=n_pairs, d_sae=d_sae, method=score_config.method,
                 config=null_config)
    return pl.concat([scores, null.select("p_value", "q_value")], how="horizontal")


@dataclass
class _Table:
    """Each language's rows grouped by feature, in the form every permutation reads."""

    n_pairs: int
    method: str
    # Per language: feature f's rows are start[f]:start[f + 1] of slot and logp.
    start: list[Int64[np.ndarray, " d_sae+1"]]
    slot: list[Int32[np.ndarray, " n"]]
    # log P_L of the row's pair: the logit minus the feature's log-partition in that language.
    logp: list[Float64[np.ndarray, " n"]]
    # log P_L of a pair where the feature is silent in L, per feature and language.
    silent: Float64[np.ndarray, "d_sae k"]
    # Per-pair divergence term from each language's log-probability column.
    pair_term: Callable[[list[Float64[np.ndarray, " m"]]], Float64[np.ndarray, " m"]]

    @property
    def n_langs(self) -> int:
        return len(self.slot)

    def rows_of(self, lang: int, features: Int64[np.ndarray, " g"]) -> Int64[np.ndarray, " r"]:
        """Indices of the rows of ``features`` in language ``lang``, feature by feature."""
        lo, hi = self.start[lang][features], self.start[lang][features + 1]
        counts = hi - lo
        # Concatenated aranges lo..hi without a Python loop.
        return np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())


def _null(rows: list[Rows], *, n_pairs: int, d_sae: int, method: str,
          config: NullConfig) -> pl.DataFrame:
    """Null of validated rows; empties ``rows`` (its int64 copies are not needed past the
    grouping, and on a large table they are most of the memory)."""
    check_pairs(rows, n_pairs)
    alive = np.stack([r.counts > 0 for r in rows]).all(axis=0)
    table = _group(rows, n_pairs=n_pairs, d_sae=d_sae, method=method)
    hits, done = _count_hits(table, alive, config)
    h = config.early_stop_hits
    stopped = (h > 0) & (hits >= h)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(stopped, hits / done, (1 + hits) / (1 + done))
    p[~alive] = np.nan
    q = np.full(d_sae, np.nan)
    q[alive] = bh_qvalues(p[alive])
    return pl.DataFrame(
        {
            "feature_id": np.arange(d_sae, dtype=np.uint32),
            "p_value": p,
            "q_value": q,
            "n_permutations": done.astype(np.uint32),
        },
        nan_to_null=True,
    )


def _group(rows: list[Rows], *, n_pairs: int, d_sae: int, method: str) -> _Table:
    rescale = logit_rescale(rows, method)
    log_z = log_partitions(rows, rescale, n_pairs, d_sae)
    start, slot, logp = [], [], []
    for lang in range(len(rows)):
        r = rows[lang]
        lp = np.empty(r.slot.size)
        for lo, hi in feature_chunks([r]):
            a, b = r.start[lo], r.start[hi]
            # The same subtraction as scoring's, so the observed pairing reproduces its terms.
            lp[a:b] = row_logits(r, rescale[lang], a, b) - log_z[r.feature_ids(lo, hi), lang]
        start.append(r.start), slot.append(r.slot), logp.append(lp)
        rows[lang] = None  # free the values as we go: on a large table they are a GB
        del r
    rows.clear()
    return _Table(n_pairs=n_pairs, method=method, start=start, slot=slot, logp=logp, silent=-log_z,
                  pair_term=_pair_term(method, len(start)))


def _pair_term(method: str, n_langs: int
               ) -> Callable[[list[Float64[np.ndarray, " m"]]], Float64[np.ndarray, " m"]]:
    """The method's per-pair divergence term on log-probability columns. For two languages a
    closed form in the gap between them, several times faster than scoring's general one: the
    null evaluates it billions of times. Its rounding is absolute (relative to the pair's
    probability), which is all the comparison of D's needs."""
    if n_langs != 2:
        general = pair_divergence(method)
        return lambda cols: general(np.column_stack(cols))

    def two(cols: list[Float64[np.ndarray, " m"]]) -> Float64[np.ndarray, " m"]:
        a, b = cols
        gap = np.abs(a - b)
        ratio = np.exp(-gap)  # P_low / P_high
        log_sum = np.log1p(ratio)  # log((P_high + P_low) / P_high)
        # With M = P_high (1 + ratio) / 2, log M - log P_high = log_sum - ln 2.
        if method == "seed":  # M (log M - mean log P)
            inner = (1 + ratio) * (0.5 * gap + log_sum - _LN2)
        else:  # mean P (log P - log M)
            inner = (1 + ratio) * (_LN2 - log_sum) - ratio * gap
        return 0.5 * np.exp(np.maximum(a, b)) * inner

    return two


def _count_hits(table: _Table, alive: np.ndarray,
                config: NullConfig) -> tuple[Int64[np.ndarray, " d"], Int64[np.ndarray, " d"]]:
    """Per feature, permutations at least as bilingual as the observed pairing, and permutations
    done, following the early-stopping rule."""
    d_sae, n, k = alive.size, table.n_pairs, table.n_langs
    features = np.flatnonzero(alive)
    identity = np.broadcast_to(np.arange(n, dtype=np.int32), (k - 1, 1, n))
    observed, scale = _overlap_shift(table, features, identity, identity, check=True)
    threshold = np.full(d_sae, np.nan)
    threshold[features] = observed[0] + _TIE_RTOL * scale

    hits = np.zeros(d_sae, dtype=np.int64)
    done = np.zeros(d_sae, dtype=np.int64)
    active = alive.copy()
    h = config.early_stop_hits
    stream = permutation_stream(n, k, config.seed)
    used, size = 0, _FIRST_BLOCK
    while used < config.permutations and active.any():
        b = min(size, config.permutations - used)
        # (k-1, b, n): block[L - 1, t] is permutation t's map of language L's slots.
        forward = np.stack([next(stream) for _ in range(b)], axis=1).astype(np.int32)
        inverse = np.empty_like(forward)
        np.put_along_axis(inverse, forward,
                          np.broadcast_to(np.arange(n, dtype=np.int32), forward.shape), axis=2)
        features = np.flatnonzero(active)
        shift, _ = _overlap_shift(table, features, forward, inverse)
        cum = hits[features] + np.cumsum(shift <= threshold[features], axis=0)
        if h > 0:
            reached = cum >= h
            stops = reached.any(axis=0)
            # Permutations count up to and including the one that brought the h-th hit.
            done[features] += np.where(stops, reached.argmax(axis=0) + 1, b)
            hits[features] = np.where(stops, h, cum[-1])
            active[features[stops]] = False
        else:
            done[features] += b
            hits[features] = cum[-1]
        used += b
        size = min(2 * size, _MAX_BLOCK)
    return hits, done


def _overlap_shift(
    table: _Table,
    features: Int64[np.ndarray, " a"],
    forward: Int32[np.ndarray, "k_minus_1 b n"],
    inverse: Int32[np.ndarray, "k_minus_1 b n"],
    *,
    check: bool = False,
) -> tuple[Float64[np.ndarray, "b a"], Float64[np.ndarray, " a"]]:
    """D (the pairing-dependent part of jsd) of ``features`` under each permutation, and the
    size of each feature's divergence terms (the scale of D's rounding). With ``check``,
    duplicate (pair, feature) rows raise ValueError."""
    n, k = table.n_pairs, table.n_langs
    n_perm = forward.shape[1]
    out = np.zeros((n_perm, features.size))
    scale = np.zeros(features.size)
    per_feature = sum(table.start[lang][features + 1] - table.start[lang][features]
                      for lang in range(k))
    max_group = max(1, _MARKER_ENTRIES // (n * k))
    # Per language, row index of (feature in group, slot) or -1; reset after each group by
    # touching only what was set, so one allocation serves the whole block.
    markers = [np.full(max_group * n, -1, dtype=np.int32) for _ in range(k)]
    lo = 0
    while lo < features.size:
        # Greedy groups: at most max_group features and, unless one feature alone is bigger,
        # _GROUP_ROWS rows.
        rows_upto = np.cumsum(per_feature[lo : lo + max_group])
        hi = lo + max(1, int(np.searchsorted(rows_upto, _GROUP_ROWS, side="right")))
        group = _Group(table, features[lo:hi], markers, check)
        try:
            scale[lo:hi] = group.scale
            # A pair where two or more languages fire holds a row of some language but the
            # last; it is counted once, at the lowest such language.
            if k == 2:
                out[:, lo:hi] += _shift_two(group, inverse[0], markers[1])
            for lang in range(k - 1 if k > 2 else 0):
                n_rows = group.slot[lang].size
                step = max(1, _CHUNK_ENTRIES // max(1, n_rows))
                for t0 in range(0, n_perm if n_rows else 0, step):
                    t1 = min(n_perm, t0 + step)
                    out[t0:t1, lo:hi] += _shift_many(group, lang, forward[:, t0:t1],
                                                     inverse[:, t0:t1], markers)
        finally:
            group.unmark(markers)
        lo = hi
    return out, scale


class _Group:
    """A few features' rows in every language, marked in the scratch index, with each row's
    term when it fires alone on its pair."""

    def __init__(self, table: _Table, features: Int64[np.ndarray, " g"],
                 markers: list[Int32[np.ndarray, " m"]], check: bool) -> None:
        n, k = table.n_pairs, table.n_langs
        self.size = g = features.size
        self.term = table.pair_term
        self.silent = table.silent[features]  # (g, k)
        # Each feature's term on a pair where no language fires.
        self.zero = self.term([self.silent[:, lang] for lang in range(k)])
        self.local, self.slot, self.logp, self.single, self.offset = [], [], [], [], []
        for lang in range(k):
            counts = table.start[lang][features + 1] - table.start[lang][features]
            idx = table.rows_of(lang, features)
            loc = np.repeat(np.arange(g, dtype=np.int32), counts)
            s, lp = table.slot[lang][idx], table.logp[lang][idx]
            self.local.append(loc), self.slot.append(s), self.logp.append(lp)
            self.offset.append(loc * np.int32(n))
            at = self.offset[lang] + s
            markers[lang][at] = np.arange(s.size, dtype=np.int32)
            if check and not (markers[lang][at] == np.arange(s.size)).all():
                self.unmark(markers)
                raise ValueError(
                    "max-activation table has duplicate (pair_id, lang, feature_id) rows")
            alone = [self.silent[loc, other] for other in range(k)]
            alone[lang] = lp
            self.single.append(self.term(alone))
        # The size of the features' divergence terms (all >= 0): a tie's rounding scales with it.
        self.scale = sum(np.bincount(self.local[lang], self.single[lang], minlength=g)
                         for lang in range(k)) + n * self.zero
        if k == 2:
            self._two_language_parts(table.method)

    def _two_language_parts(self, method: str) -> None:
        """Per row, what a pair where both languages fire needs from it: P, and its share of
        the lone-pair and silent terms the pair replaces (the first language's row carries the
        silent one). A pair's change of divergence is then share_0 + share_1 + rest, with
        M = (P_0 + P_1) / 2: exact's joint term mean_L P_L log P_L - M log M puts its first half
        into the shares, rest = -M log M; seed's M (log M - mean_L log P_L) stays whole."""
        self.prob, self.share = [], []
        for lang in range(2):
            logp = self.logp[lang]
            prob = np.exp(logp)
            share = -self.single[lang]
            if lang == 0:
                share += self.zero[self.local[0]]
            if method == "exact":
                share += 0.5 * prob * logp
            self.prob.append(prob), self.share.append(share)
        self.seed = method == "seed"

    def unmark(self, markers: list[Int32[np.ndarray, " m"]]) -> None:
        for lang, (offset, slot) in enumerate(zip(self.offset, self.slot)):
            markers[lang][offset + slot] = -1

    def shift(self, t: Int64[np.ndarray, " h"], row: list[Int64[np.ndarray, " h"]],
              holder: int, n_perm: int) -> Float64[np.ndarray, "b g"]:
        """Sum per (permutation, feature) of what pairs where several languages fire add to the
        divergence: ``row[lang]`` is each pair's row in that language, -1 where it is silent."""
        loc = self.local[holder][row[holder]]
        joint, alone, n_fire = [], 0.0, 0
        for lang, r in enumerate(row):
            on = r >= 0
            joint.append(np.where(on, self.logp[lang][r], self.silent[loc, lang]))
            alone = alone + np.where(on, self.single[lang][r], 0.0)
            n_fire = n_fire + on
        # The joint term replaces each firing language's lone-pair term, and the pairs those
        # rows occupied alone, all but one, become silent in every language.
        delta = self.term(joint) - alone + (n_fire - 1) * self.zero[loc]
        return np.bincount(t * self.size + loc, weights=delta,
                           minlength=n_perm * self.size).reshape(n_perm, self.size)


def _shift_two(group: _Group, inverse: Int32[np.ndarray, "b n"],
               marker: Int32[np.ndarray, " m"]) -> Float64[np.ndarray, "b g"]:
    """Two languages: the first's rows look up, per permutation, the second's row now paired
    with them. The hot loop of the null, compiled (one pass, no temporaries, permutations
    split across cores)."""
    out = np.zeros((inverse.shape[0], group.size))
    _shift_two_kernel(inverse, group.slot[0], group.offset[0], group.local[0], marker,
                      group.prob[0], group.prob[1], group.logp[0], group.logp[1],
                      group.share[0], group.share[1], group.seed, out)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _shift_two_kernel(inverse, slot0, offset0, local0, marker, prob0, prob1, logp0, logp1,
                      share0, share1, seed, out):  # pragma: no cover - compiled
    for t in numba.prange(inverse.shape[0]):  # each thread owns whole rows of out: no races
        row = inverse[t]
        for r in range(slot0.size):
            r1 = marker[offset0[r] + row[slot0[r]]]
            if r1 < 0:
                continue
            mix = (prob0[r] + prob1[r1]) * 0.5
            # M underflows to 0 only where both P do; M log M -> 0 there, as it should.
            rest = np.log(max(mix, _TINY))
            if seed:  # M (log M - mean log P)
                rest = (rest - (logp0[r] + logp1[r1]) * 0.5) * mix
            else:  # -M log M
                rest = -(rest * mix)
            out[t, local0[r]] += rest + share0[r] + share1[r1]


def _shift_many(group: _Group, lang: int, forward: Int32[np.ndarray, "k_minus_1 b n"],
                inverse: Int32[np.ndarray, "k_minus_1 b n"],
                markers: list[Int32[np.ndarray, " m"]]) -> Float64[np.ndarray, "b g"]:
    """Any number of languages: the pairs first held by ``lang``'s rows (no lower language
    fires on them) and at least one other language."""
    k = len(group.slot)
    s, n_perm = group.slot[lang], forward.shape[1]
    # The new slot of each row under each permutation (language 0 stays put).
    new = np.broadcast_to(s, (n_perm, s.size)) if lang == 0 else forward[lang - 1][:, s]
    partner = []
    for other in range(k):
        if other == lang:
            partner.append(None)
            continue
        if other == 0:
            old = new
        elif lang == 0:
            old = inverse[other - 1][:, s]
        else:
            old = np.take_along_axis(inverse[other - 1], new, axis=1)
        partner.append(markers[other][old + group.offset[lang]])
    others = [p >= 0 for p in partner if p is not None]
    holder = np.logical_or.reduce(others)
    for other in range(lang):  # a lower language fires there: the pair is counted with it
        holder &= ~others[other]
    t, r = np.nonzero(holder)
    row = [r if other == lang else partner[other][t, r] for other in range(k)]
    return group.shift(t, row, lang, n_perm)
