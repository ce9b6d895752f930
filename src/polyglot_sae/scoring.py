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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import polars as pl
from jaxtyping import Float64, Int64

from .errors import InputError
from .atomic_io import read_metadata, write_parquet
from .reduce import n_pairs_of

if TYPE_CHECKING:
    from .null import NullConfig

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
    """One language's rows of the table, as aligned arrays."""

    feature: Int64[np.ndarray, " n"]
    pair: Int64[np.ndarray, " n"]
    value: Float64[np.ndarray, " n"]


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
    langs = list(langs)
    if config.method == "seed" and len(langs) != 2:
        raise ValueError(f"method 'seed' compares exactly 2 languages, got {langs}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    return score_rows(load_rows(maxacts, langs, d_sae), n_pairs=n_pairs, d_sae=d_sae,
                      config=config)


def score_rows(rows: list[Rows], *, n_pairs: int, d_sae: int, config: ScoreConfig) -> pl.DataFrame:
    """``score_features`` on a table already split by ``load_rows`` (so a caller that needs the
    rows again, like the permutation null, loads the table once)."""
    if config.method == "seed" and len(rows) != 2:
        raise ValueError(f"method 'seed' compares exactly 2 languages, got {len(rows)}")
    n_distinct = np.unique(np.concatenate([r.pair for r in rows])).size
    if n_distinct > n_pairs:
        raise ValueError(f"the table has {n_distinct} distinct pair ids but n_pairs={n_pairs}")

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


def score_file(
    maxacts_path: str | Path,
    out_path: str | Path,
    *,
    langs: Sequence[str],
    config: ScoreConfig,
    d_sae: int | None = None,
    null: NullConfig | None = None,
) -> pl.DataFrame:
    """Score a max-activation parquet into ``out_path`` and return the scores.

    ``n_pairs`` comes from the table's provenance (see ``reduce.n_pairs_of``),
    ``d_sae`` from the argument or else the provenance. With ``null`` (and
    ``null.permutations > 0``) the scores get the permutation null's ``p_value`` and
    ``q_value`` (see ``polyglot_sae.null``) and the provenance its settings.
    """
    meta = read_metadata(maxacts_path)
    d_sae = d_sae if d_sae is not None else meta.get("d_sae")
    if d_sae is None:
        raise InputError(
            maxacts_path, "d_sae", "not recorded in the table's metadata", "pass d_sae (--d-sae)"
        )
    table = pl.read_parquet(maxacts_path)
    n_pairs = n_pairs_of(maxacts_path, table)
    with_null = null is not None and null.permutations > 0
    try:
        if with_null:
            from .null import score_with_null  # null imports this module

            scores = score_with_null(table, n_pairs=n_pairs, d_sae=int(d_sae), langs=langs,
                                     score_config=config, null_config=null)
        else:
            scores = score_features(table, n_pairs=n_pairs, d_sae=int(d_sae), langs=langs,
                                    config=config)
    except ValueError as err:  # name the file: the table, not the caller, is what is wrong
        raise InputError(maxacts_path, "max-activation table", str(err),
                         "check --langs/--d-sae against the table, or rebuild it with reduce") from err
    provenance = (
        meta | asdict(config) | {"langs": list(langs), "n_pairs": n_pairs, "d_sae": int(d_sae)}
    )
    if with_null:
        provenance |= {f"null_{key}": value for key, value in asdict(null).items()}
    write_parquet(scores, out_path, provenance)
    return scores


def per_language_counts(
    maxacts: pl.DataFrame, langs: Sequence[str], d_sae: int
) -> Int64[np.ndarray, "k d_sae"]:
    """Number of pairs on which each feature fires, per language (rows follow ``langs``)."""
    return _counts(load_rows(maxacts, list(langs), d_sae), d_sae)


def _counts(rows: list[Rows], d_sae: int) -> Int64[np.ndarray, "k d_sae"]:
    return np.stack([np.bincount(r.feature, minlength=d_sae) for r in rows])


def load_rows(maxacts: pl.DataFrame, langs: list[str], d_sae: int) -> list[Rows]:
    """Validate the table and split the rows of ``langs`` by language."""
    # _divergence packs the feature id into the high half of an int64 key.
    if not 1 <= d_sae < 2**31:
        raise ValueError(f"d_sae must be in [1, 2**31), got {d_sae}")
    if len(langs) < 2 or len(set(langs)) != len(langs):
        raise ValueError(f"langs must be at least 2 distinct languages, got {langs}")
    missing = set(_COLUMNS) - set(maxacts.columns)
    if missing:
        raise ValueError(f"max-activation table lacks columns {sorted(missing)}")
    # One language at a time, and no string copy of the lang column: a GemmaScope-sized table
    # has ~10^8 rows, and a cast-then-partition copy of it costs several times its size.
    lang_dtype = maxacts.schema["lang"]
    lang_col = (pl.col("lang") if lang_dtype in (pl.String, pl.Categorical)
                or isinstance(lang_dtype, pl.Enum) else pl.col("lang").cast(pl.String))
    by_lang = {
        lang: maxacts.lazy().filter(lang_col == lang).select(
            pl.col("pair_id").cast(pl.UInt32),
            pl.col("feature_id").cast(pl.UInt32),
            pl.col("value").cast(pl.Float64),
        ).collect()
        for lang in langs
    }
    if any(part.null_count().sum_horizontal().item() > 0 for part in by_lang.values()):
        raise ValueError("max-activation table has null entries")
    absent = [lang for lang in langs if by_lang[lang].height == 0]
    if absent:
        raise ValueError(f"languages {absent} have no rows in the max-activation table")

    rows = []
    for lang in langs:
        part = by_lang.pop(lang)
        r = Rows(
            feature=part["feature_id"].to_numpy().astype(np.int64),
            pair=part["pair_id"].to_numpy().astype(np.int64),
            value=part["value"].to_numpy(),
        )
        # Absent rows mean 0, so an explicit value <= 0 would be counted as firing.
        if not (np.isfinite(r.value).all() and (r.value > 0).all()):
            raise ValueError(f"language {lang!r} has values that are <= 0 or not finite")
        if r.feature.max() >= d_sae:
            raise ValueError(f"language {lang!r} has feature_id {r.feature.max()} >= d_sae={d_sae}")
        rows.append(r)
    return rows


def method_logits(rows: list[Rows], method: Method) -> list[Float64[np.ndarray, " n"]]:
    """Per language, the logits the softmax over pairs sees: the values themselves for exact;
    for seed, rescaled so the language's largest value in the whole table becomes 100."""
    if method == "seed":
        return [r.value * _SEED_LOGIT_MAX / r.value.max() for r in rows]
    return [r.value for r in rows]


def feature_divergence(rows: list[Rows], *, n_pairs: int, d_sae: int,
                       method: Method) -> Float64[np.ndarray, " d_sae"]:
    """Each feature's divergence (the `jsd` column) for the method, from validated rows."""
    total = _divergence(rows, method_logits(rows, method), n_pairs, d_sae, pair_divergence(method))
    return total / n_pairs if method == "seed" else total


def pair_divergence(
    method: Method,
) -> Callable[[Float64[np.ndarray, "n k"]], Float64[np.ndarray, " n"]]:
    """Each pair's share of a feature's divergence, from its log-probabilities in every language
    (pairs, k); the seed then divides the feature's sum by n_pairs."""
    return _kl_from_mixture if method == "seed" else _kl_to_mixture


def log_partitions(
    rows: list[Rows], logits: list[Float64[np.ndarray, " n"]], n_pairs: int, d_sae: int
) -> Float64[np.ndarray, "d_sae k"]:
    """Per feature and language, logsumexp of the logits over all n_pairs pairs (silent ones
    included): the softmax over pairs is ``exp(logit - log_partition)``."""
    return np.stack(
        [_log_partition(r.feature, x, n_pairs, d_sae) for r, x in zip(rows, logits)], axis=1
    )


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
    logits: list[Float64[np.ndarray, " n"]],
    n_pairs: int,
    d_sae: int,
    term: Callable[[Float64[np.ndarray, "n k"]], Float64[np.ndarray, " n"]],
) -> Float64[np.ndarray, " d_sae"]:
    """Sum over all pairs of ``term(log P)``, P_L the per-feature softmax of the logits over pairs.

    ``term`` maps log-probabilities of shape (pairs, k) to each pair's share of
    the divergence.
    """
    log_z = log_partitions(rows, logits, n_pairs, d_sae)

    # A pair id is a u32, so one int64 key per (feature, pair) orders by feature first.
    sizes = [r.feature.size for r in rows]
    union, inverse = np.unique(np.concatenate([(r.feature << 32) | r.pair for r in rows]),
                               return_inverse=True)
    union_feature = union >> 32
    del union
    union_logits = np.zeros((union_feature.size, len(rows)))
    start = 0
    for lang, (size, x) in enumerate(zip(sizes, logits)):
        at = inverse[start : start + size]
        start += size
        if np.bincount(at).max() > 1:
            raise ValueError("max-activation table has duplicate (pair_id, lang, feature_id) rows")
        union_logits[at, lang] = x
    del inverse, at

    # The terms in chunks, for memory (their temporaries are several times the table), cut at
    # feature boundaries: each feature's sum is then the very bincount an unchunked pass makes.
    total = np.zeros(d_sae)
    cuts = np.searchsorted(union_feature, union_feature[_TERM_CHUNK::_TERM_CHUNK])
    bounds = np.unique(np.r_[0, cuts, union_feature.size])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        feature = union_feature[lo:hi]
        first = feature[0]
        total[first : feature[-1] + 1] = np.bincount(
            feature - first, weights=term(union_logits[lo:hi] - log_z[feature]),
            minlength=feature[-1] + 1 - first,
        )
    # Pairs where no language fires have logit 0 everywhere, hence identical probabilities.
    n_silent = n_pairs - np.bincount(union_feature, minlength=d_sae)
    return total + n_silent * term(-log_z)


def _log_partition(
    feature: Int64[np.ndarray, " n"], x: Float64[np.ndarray, " n"], n_pairs: int, d_sae: int
) -> Float64[np.ndarray, " d_sae"]:
    """Per feature, logsumexp over all n_pairs pairs, the implicit zero logits included."""
    # Logits are > 0, so the max over all pairs is the max over the explicit ones, or 0.
    peak = np.zeros(d_sae)
    np.maximum.at(peak, feature, x)
    n_zero = n_pairs - np.bincount(feature, minlength=d_sae)
    # The peak's own term is exp(0) = 1, so the sum is >= 1 and its log finite.
    total = np.bincount(
        feature, weights=np.exp(x - peak[feature]), minlength=d_sae
    ) + n_zero * np.exp(-peak)
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
