"""Bilingual-index (BI) scoring of SAE features from a max-activation table.

Input is the sparse max-activation table ``pair_id:u32, lang:str, feature_id:u32,
value:f32``: for aligned sentence pair k, language L and feature i, the max over
tokens of the activation, with only the rows where it is > 0. Write ``q_L[:, i]``
for the length-``n_pairs`` vector it defines (zero where a row is absent).

Both methods score a feature by how alike its pair distributions are across the
languages (a divergence, low = fires on the same pairs in every language) plus a
rarity term ``beta * idaf``, and rank the features alive in every language by
``bi_score = jsd + beta * idaf`` ascending (lower is better)::

                  exact (the text's definition)      seed (the published code, k = 2)
    logits        q_L as is                          q_L * 100 / max(q_L over all
                                                     pairs AND features): one
                                                     global scale per language
    P_L           softmax over pairs                 softmax over pairs
    divergence    mean_L KL(P_L || M), M = mean P_L  mean_L KL(M || P_L) / n_pairs
                  (generalised JSD, any k >= 2)      (``ur_kldiv`` swaps its
                                                     arguments and ``.mean`` averages
                                                     over pairs instead of summing)
    idaf          n_pairs * k / count                -(n_pairs * 2 / count), and
                  (count = #(pair, lang) with q>0)   -1 where count < 10
    beta          -(jsd_(beta_rank) - jsd_min)       the same formula, applied to
                  / (idaf_max - idaf_min)            the negated idaf
    dead          never fires in some language       the same

Why the rankings differ. The global rescale sets every feature's softmax
temperature by its language's largest activation anywhere, so a feature's score
depends on unrelated features, and a feature with identical activations in both
languages has a nonzero divergence whenever the two global maxima differ.
KL(M||P) is not KL(P||M): the sum is still symmetric in the two languages, but it
is not the JSD and not bounded by ln 2. Dividing by ``n_pairs`` shrinks every
JSD, and beta with them, so it alone leaves the ranking unchanged. Most
important, the seed negates idaf *and* beta is negative, so ``beta * idaf`` is
positive and grows with rarity: the seed penalises rare features, the opposite
of the text ("the negative sign is there to make the top features have lower
scores"), except the features firing fewer than 10 times, whose idaf is forced
to -1, the smallest penalty there is. (The published Idaf also divides in
float32, torch's default dtype; here everything is float64.)

Both are computed sparsely in float64 log space: per feature only the pairs where
some language fires are explicit, and the remaining pairs, where every language
is 0, share one term that is added times their count. Raw maxima can be in the
hundreds, so a plain softmax would overflow; nothing exponentiates a raw value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import polars as pl
from jaxtyping import Float, Float64, Int32, Int64, UInt32



Method = Literal["seed", "exact"]

_COLUMNS = ("pair_id", "lang", "feature_id", "value")
# The seed code rescales each language so its largest activation becomes this logit.
_SEED_LOGIT_MAX = 100.0
# The seed code sets idaf to 1 for features firing on fewer (pair, lang) cells.
_SEED_MIN_COUNT = 10
# (feature, pair) entries whose divergence terms are evaluated at once (about 0.5 GB of
# temporaries for two languages).
_TERM_CHUNK = 1 << 22


@dataclass(frozen=True)
class ScoreConfig:
    """How to score features; see the module docstring for the two methods."""

    # "exact": the text's definition, any number of languages; "seed": the
    # published code's arithmetic, decision for decision, two languages only.
    method: Method = "exact"
    # 0-based position in the ascending sort of alive features' JSD whose distance
    # to the minimum sets |beta| (300 in the published code); clamped to the last
    # alive feature when there are fewer.
    beta_rank: int = 300

    def __post_init__(self) -> None:
        if self.method not in get_args(Method):
            raise ValueError(f"method must be one of {get_args(Method)}, got {self.method!r}")
        if self.beta_rank < 0:
            raise ValueError(f"beta_rank must be >= 0, got {self.beta_rank}")


@dataclass(frozen=True)
class Rows:
    """One language's rows of the table, grouped by feature and ordered by pair within each:
    feature f's rows are ``start[f]:start[f + 1]``. Compact on purpose (8 bytes a row for a
    float32 table): a GemmaScope-sized table has ~10^8 rows."""

    start: Int64[np.ndarray, " d_sae_plus_1"]
    # The row's pair as the rank of its pair id among the ids present in any language: dense,
    # so per-pair lookups index arrays instead of hashing ids. Silent pairs have no slot.
    slot: Int32[np.ndarray, " n"]
    # The max activation, in the table's own float dtype (converted to float64 per chunk).
    value: Float[np.ndarray, " n"]

    @property
    def counts(self) -> Int64[np.ndarray, " d_sae"]:
        """Pairs on which each feature fires."""
        return np.diff(self.start)

    def feature_ids(self, lo: int = 0, hi: int | None = None) -> Int64[np.ndarray, " m"]:
        """The feature id of each row of features lo..hi-1."""
        hi = self.start.size - 1 if hi is None else hi
        return np.repeat(np.arange(lo, hi), np.diff(self.start[lo : hi + 1]))


def score_features(
    maxacts: pl.DataFrame,
    *,
    n_pairs: int,
    d_sae: int,
    langs: Sequence[str],
    config: ScoreConfig,
) -> pl.DataFrame:
    """Score every feature 0..d_sae-1 of a max-activation table.

    Returns one row per feature, sorted by feature_id, with columns
    ``feature_id:u32, jsd:f64, idaf:f64, beta:f64, bi_score:f64, dead:bool,
    rank:u32``. ``rank`` is the 0-based position among alive features by
    bi_score (ties by feature_id) and null for dead ones. ``idaf`` and
    ``bi_score`` are null for features that never fire (method exact only; the
    seed gives them idaf -1). ``beta`` is the same on every row.
    """
    langs = check_request(langs, n_pairs, config)
    return score_rows(load_rows(maxacts, langs, d_sae), n_pairs=n_pairs, d_sae=d_sae,
                      config=config)


def check_request(langs: Sequence[str], n_pairs: int, config: ScoreConfig) -> list[str]:
    """The languages as a list, once the request makes sense for the method."""
    langs = list(langs)
    if config.method == "seed" and len(langs) != 2:
        raise ValueError(f"method 'seed' compares exactly 2 languages, got {langs}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    return langs


def score_rows(rows: list[Rows], *, n_pairs: int, d_sae: int, config: ScoreConfig) -> pl.DataFrame:
    """``score_features`` on a table already split by ``load_rows`` (so a caller that needs the
    rows again, like the permutation null, loads the table once)."""
    if config.method == "seed" and len(rows) != 2:
        raise ValueError(f"method 'seed' compares exactly 2 languages, got {len(rows)}")
    check_pairs(rows, n_pairs)

    counts = _counts(rows, d_sae)
    dead = (counts == 0).any(axis=0)
    firing = counts.sum(axis=0)
    n_cells = n_pairs * len(rows)
    with np.errstate(divide="ignore"):
        idaf = n_cells / firing
    jsd = feature_divergence(rows, n_pairs=n_pairs, d_sae=d_sae, method=config.method)
    if config.method == "seed":
        # Decision for decision the published code, not what its text describes.
        idaf = -np.where(firing < _SEED_MIN_COUNT, 1.0, idaf)
    else:
        idaf[firing == 0] = np.nan

    alive = ~dead
    beta = _beta(jsd[alive], idaf[alive], config.beta_rank)
    bi = jsd + beta * idaf
    feature_id = np.arange(d_sae, dtype=np.uint32)
    order = np.lexsort((feature_id, bi))
    order = order[alive[order]]
    rank = np.zeros(d_sae, dtype=np.uint32)
    rank[order] = np.arange(order.size, dtype=np.uint32)

    return pl.DataFrame(
        {
            "feature_id": feature_id,
            "jsd": jsd,
            "idaf": idaf,
            "beta": np.full(d_sae, beta),
            "bi_score": bi,
            "dead": dead,
            "rank": rank,
        },
        nan_to_null=True,
    ).with_columns(pl.when(~pl.col("dead")).then(pl.col("rank")).alias("rank"))


def per_language_counts(
    maxacts: pl.DataFrame, langs: Sequence[str], d_sae: int
) -> Int64[np.ndarray, "k d_sae"]:
    """Number of pairs on which each feature fires, per language (rows follow ``langs``)."""
    return _counts(load_rows(maxacts, list(langs), d_sae), d_sae)


def _counts(rows: list[Rows], d_sae: int) -> Int64[np.ndarray, "k d_sae"]:
    return np.stack([r.counts for r in rows])


def _n_present(rows: list[Rows]) -> int:
    """Distinct pairs on which some language fires (slots are 0..n_present-1)."""
    return max(int(r.slot.max()) + 1 for r in rows)


def check_pairs(rows: list[Rows], n_pairs: int) -> None:
    """The table may not hold more distinct pairs than it says it was built from."""
    if (n_present := _n_present(rows)) > n_pairs:
        raise ValueError(f"the table has {n_present} distinct pair ids but n_pairs={n_pairs}")


def load_rows(maxacts: pl.DataFrame | pl.LazyFrame, langs: list[str], d_sae: int) -> list[Rows]:
    """Validate the table and split the rows of ``langs`` by language, grouped by feature."""
    if not 1 <= d_sae < 2**31:
        raise ValueError(f"d_sae must be in [1, 2**31), got {d_sae}")
    if len(langs) < 2 or len(set(langs)) != len(langs):
        raise ValueError(f"langs must be at least 2 distinct languages, got {langs}")
    schema = maxacts.collect_schema()
    missing = set(_COLUMNS) - set(schema.names())
    if missing:
        raise ValueError(f"max-activation table lacks columns {sorted(missing)}")
    # One language at a time, and no string copy of the lang column: a GemmaScope-sized table
    # has ~10^8 rows, and a cast-then-partition copy of it costs several times its size.
    lang_dtype = schema["lang"]
    lang_col = (pl.col("lang") if lang_dtype in (pl.String, pl.Categorical)
                or isinstance(lang_dtype, pl.Enum) else pl.col("lang").cast(pl.String))
    value_dtype = pl.Float32 if schema["value"] == pl.Float32 else pl.Float64
    parts = []
    for lang in langs:
        part = maxacts.lazy().filter(lang_col == lang).select(
            pl.col("feature_id").cast(pl.UInt32),
            pl.col("pair_id").cast(pl.UInt32),
            pl.col("value").cast(value_dtype),
        ).sort("feature_id", "pair_id").collect()
        if part.height == 0:
            raise ValueError(f"languages {[lang]} have no rows in the max-activation table")
        if part.null_count().sum_horizontal().item() > 0:
            raise ValueError("max-activation table has null entries")
        feature, pair = part["feature_id"].to_numpy(), part["pair_id"].to_numpy()
        value = part["value"].to_numpy()
        # Absent rows mean 0, so an explicit value <= 0 would be counted as firing.
        if not (np.isfinite(value).all() and (value > 0).all()):
            raise ValueError(f"language {lang!r} has values that are <= 0 or not finite")
        if feature[-1] >= d_sae:
            raise ValueError(f"language {lang!r} has feature_id {feature[-1]} >= d_sae={d_sae}")
        if ((feature[1:] == feature[:-1]) & (pair[1:] == pair[:-1])).any():
            raise ValueError("max-activation table has duplicate (pair_id, lang, feature_id) rows")
        start = np.searchsorted(feature, np.arange(d_sae + 1, dtype=np.uint32)).astype(np.int64)
        parts.append((start, pair, value))
        del part, feature

    slots = _pair_slots([pair for _, pair, _ in parts])
    return [Rows(start=start, slot=slot, value=value)
            for (start, _, value), slot in zip(parts, slots)]


def _pair_slots(pairs: list[UInt32[np.ndarray, " n"]]) -> list[Int32[np.ndarray, " n"]]:
    """Each row's pair slot: the rank of its pair id among the ids present in any language."""
    top = max(int(p.max()) for p in pairs)
    if top < max(8 * sum(p.size for p in pairs), 1 << 20):
        # Ids are near-dense in practice: a lookup table beats sorting a hundred million ids.
        seen = np.zeros(top + 1, dtype=bool)
        for p in pairs:
            seen[p] = True
        lookup = (np.cumsum(seen, dtype=np.int64) - 1).astype(np.int32)
        return [lookup[p] for p in pairs]
    ids, inverse = np.unique(np.concatenate(pairs), return_inverse=True)
    bounds = np.cumsum([0] + [p.size for p in pairs])
    return [inverse[a:b].astype(np.int32) for a, b in zip(bounds[:-1], bounds[1:])]


def logit_rescale(rows: list[Rows], method: Method) -> list[float | None]:
    """Per language, the value the softmax's logits are rescaled from: for seed the language's
    largest value in the whole table (it becomes 100); None for exact (logits are the values)."""
    return [float(r.value.max()) if method == "seed" else None for r in rows]


def row_logits(r: Rows, rescale: float | None, lo: int, hi: int) -> Float64[np.ndarray, " m"]:
    """Logits of rows lo..hi-1, in float64."""
    x = r.value[lo:hi].astype(np.float64)
    if rescale is not None:  # value * 100 / max, as the published code computes it
        x *= _SEED_LOGIT_MAX
        x /= rescale
    return x


def feature_chunks(rows: list[Rows]) -> list[tuple[int, int]]:
    """Consecutive feature ranges holding about _TERM_CHUNK rows over all languages (one
    feature alone may hold more), so per-row temporaries stay bounded."""
    total = sum(r.start for r in rows)
    cuts = np.searchsorted(total, np.arange(_TERM_CHUNK, total[-1], _TERM_CHUNK), side="right")
    bounds = np.unique(np.r_[0, cuts, total.size - 1])
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def feature_divergence(rows: list[Rows], *, n_pairs: int, d_sae: int,
                       method: Method) -> Float64[np.ndarray, " d_sae"]:
    """Each feature's divergence (the `jsd` column) for the method, from validated rows."""
    total = _divergence(rows, logit_rescale(rows, method), n_pairs, d_sae, pair_divergence(method))
    return total / n_pairs if method == "seed" else total


def pair_divergence(
    method: Method,
) -> Callable[[Float64[np.ndarray, "n k"]], Float64[np.ndarray, " n"]]:
    """Each pair's share of a feature's divergence, from its log-probabilities in every language
    (pairs, k); the seed then divides the feature's sum by n_pairs."""
    return _kl_from_mixture if method == "seed" else _kl_to_mixture


def log_partitions(
    rows: list[Rows], rescale: list[float | None], n_pairs: int, d_sae: int
) -> Float64[np.ndarray, "d_sae k"]:
    """Per feature and language, logsumexp of the logits over all n_pairs pairs (silent ones
    included): the softmax over pairs is ``exp(logit - log_partition)``."""
    out = np.empty((d_sae, len(rows)))
    for lo, hi in feature_chunks(rows):
        for lang, (r, peak) in enumerate(zip(rows, rescale)):
            x = row_logits(r, peak, r.start[lo], r.start[hi])
            out[lo:hi, lang] = _log_partition(r.feature_ids(lo, hi) - lo, x, r.counts[lo:hi],
                                              n_pairs)
    return out


def _beta(jsd: Float64[np.ndarray, " a"], idaf: Float64[np.ndarray, " a"], beta_rank: int) -> float:
    """-(jsd_(beta_rank) - jsd_min) / (idaf_max - idaf_min) over the alive features.

    0 when that idaf range is empty or a single value, where the published code
    would divide by zero (or index past the end with fewer than 301 alive features).
    """
    if jsd.size == 0 or idaf.max() == idaf.min():
        return 0.0
    ordered = np.sort(jsd)
    return float(
        -(ordered[min(beta_rank, ordered.size - 1)] - ordered[0]) / (idaf.max() - idaf.min())
    )


def _divergence(
    rows: list[Rows],
    rescale: list[float | None],
    n_pairs: int,
    d_sae: int,
    term: Callable[[Float64[np.ndarray, "n k"]], Float64[np.ndarray, " n"]],
) -> Float64[np.ndarray, " d_sae"]:
    """Sum over all pairs of ``term(log P)``, P_L the per-feature softmax of the logits over pairs.

    ``term`` maps log-probabilities of shape (pairs, k) to each pair's share of
    the divergence. Computed a chunk of features at a time, for memory.
    """
    log_z = log_partitions(rows, rescale, n_pairs, d_sae)
    n_slots = _n_present(rows)
    total = np.zeros(d_sae)
    n_union = np.zeros(d_sae, dtype=np.int64)
    for lo, hi in feature_chunks(rows):
        # One key per (feature, pair slot); sorted, they order by feature then pair.
        keys = [(r.feature_ids(lo, hi) - lo) * n_slots + r.slot[r.start[lo] : r.start[hi]]
                for r in rows]
        union, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        feature = union // n_slots
        del union
        union_logits = np.zeros((feature.size, len(rows)))
        at = 0
        for lang, (r, peak, key) in enumerate(zip(rows, rescale, keys)):
            union_logits[inverse[at : at + key.size], lang] = row_logits(r, peak, r.start[lo],
                                                                         r.start[hi])
            at += key.size
        del keys, inverse
        total[lo:hi] = np.bincount(feature, weights=term(union_logits - log_z[lo + feature]),
                                   minlength=hi - lo)
        n_union[lo:hi] = np.bincount(feature, minlength=hi - lo)
    # Pairs where no language fires have logit 0 everywhere, hence identical probabilities.
    return total + (n_pairs - n_union) * term(-log_z)


def _log_partition(
    feature: Int64[np.ndarray, " n"], x: Float64[np.ndarray, " n"],
    counts: Int64[np.ndarray, " d"], n_pairs: int,
) -> Float64[np.ndarray, " d"]:
    """Per feature, logsumexp over all n_pairs pairs, the implicit zero logits included."""
    # Logits are > 0, so the max over all pairs is the max over the explicit ones, or 0.
    peak = np.zeros(counts.size)
    np.maximum.at(peak, feature, x)
    # The peak's own term is exp(0) = 1, so the sum is >= 1 and its log finite.
    total = np.bincount(
        feature, weights=np.exp(x - peak[feature]), minlength=counts.size
    ) + (n_pairs - counts) * np.exp(-peak)
    return peak + np.log(total)


def _log_ratio_to_mixture(
    log_p: Float64[np.ndarray, "n k"],
) -> tuple[Float64[np.ndarray, "n k"], Float64[np.ndarray, " n"]]:
    """log P_L - log M per pair and language, and log M, for M = mean_L P_L."""
    peak = log_p.max(axis=1, keepdims=True)
    gap = log_p - peak
    # The divergences cancel to second order in log P - log M, so that difference
    # must be accurate relative to itself, not to |log M|: it is formed from the
    # small gaps to the peak (exact when the log-probs are close), never from log M.
    # For identical rows this gives exactly 0.
    log_m_gap = np.log1p(np.mean(np.expm1(gap), axis=1, keepdims=True))
    return gap - log_m_gap, (peak + log_m_gap)[:, 0]


def _kl_to_mixture(log_p: Float64[np.ndarray, "n k"]) -> Float64[np.ndarray, " n"]:
    """Per pair, mean_L P_L (log P_L - log M): the generalised JSD's summand."""
    log_ratio, _ = _log_ratio_to_mixture(log_p)
    return np.mean(np.exp(log_p) * log_ratio, axis=1)


def _kl_from_mixture(log_p: Float64[np.ndarray, "n k"]) -> Float64[np.ndarray, " n"]:
    """Per pair, mean_L M (log M - log P_L): the seed's ``ur_kldiv(p, m)``, i.e. KL(M || P)."""
    log_ratio, log_m = _log_ratio_to_mixture(log_p)
    return -np.exp(log_m) * np.mean(log_ratio, axis=1)
