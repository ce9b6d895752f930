"""The paired method's statistics: per feature, how its per-pair maxima co-vary across languages.

For aligned pair k, language L and feature i, q_L[k, i] is the max activation of i over pair
k's sentence in L (0 where the table has no row). Every statistic runs over all ``n_pairs``
scored pairs, silent ones included, and is computed sparsely: only rows where a language
fires are read, and the silent pairs enter through the sample size alone.

    n_fire_L     pairs where q_L > 0;  n_cofire: pairs where both languages fire (for three
                 or more languages the smallest such count over language pairs)
    rho          Pearson's r of q_A[:, i] and q_B[:, i] from the sums (n, Σa, Σb, Σa², Σb²,
                 Σab, the last over co-fired rows); null where a side has zero variance. For
                 three or more languages, every statistic below that compares two languages
                 is the minimum over language pairs (``lex``: the maximum), so a feature is
                 as bilingual as its least bilingual pair of languages
    rho_lo       one-sided lower confidence bound on rho at ``level`` (below)
    rho_len      partial correlation of a and b given both sentence lengths (token counts of
                 pair k's sentences in A and B), from the 4x4 covariance of (a, b, len_A,
                 len_B): the residual covariance of a and b after their least-squares
                 regressions on (1, len_A, len_B)
    nu_max,      Deng et al.'s monolinguality nu(i, L) = mean_k q_L - mean of the other
    nu_lang      languages' means (see ``polyglot_sae.score.monolinguality``), its max and argmax
    lang_share_L mean_k q_L / sum over L' of mean_k q_L': the share of the activation mass in L
    lex,         the shared-string control (``lexical``): the share of the co-fired product
    rho_nonlex   mass Σab on lexical pairs, and rho with those pairs dropped from the sample
                 (n and every sum lose them)
    rho_para,    with a paraphrase table (a second version P of one language L0, by pair id):
    ratio,       Pearson's r of q_L0 and q_P over the pairs P covers (the pairs the lengths
    ratio_lo/hi  table lists for P, else the pair ids P's table has rows for; the others are
                 dropped from that sample, n included); ratio = rho / rho_para, with a
                 two-sided ``level`` percentile interval from the same bootstrap replicates
                 (replicates where rho_para is 0 or undefined are left out)

The bound. One bootstrap weight per pair, Poisson(1) from ``seed``, shared by every language
and feature, so a replicate is a resampling of pairs; weighted sums over the nonzero rows plus
the total weight give each replicate's r in one pass over the rows. The percentile bound alone
undercovers on zero-inflated data with tens of co-firings (85-94% at a nominal 95% in our
simulations), so rho_lo is the smaller of two bounds:

* bootstrap-t: r - t*_(level) se, t* = (r* - r) / se* over the replicates, with se the
  delta-method standard error sqrt(Var(x y - r (x² + y²) / 2) / n) (x, y standardised a, b),
  which the same pass gets from weighted raw moments up to the fourth (Σa³, Σa⁴, Σa²b, Σab²,
  Σa²b², Σa³b, Σab³). Second-order accurate; 93-96% in the simulations;
* the percentile bound, the (B+1)(1 - level)-th smallest r*, where a replicate in which a
  side has zero variance counts as r* = 0. It rescues the cases where the standard error
  degenerates (a feature firing together on one or two pairs has se = 0 and an r of 1; its
  replicates without those pairs have no variance, so its bound falls to 0).

Order statistics follow Davison & Hinkley: the ceil((B+1) level)-th and floor((B+1)(1 -
level))-th of B sorted replicates. The minimum over language pairs of per-pair bounds is a
valid bound on the minimum of the true correlations. Sums are float64 in a fixed order per
feature, so a seed gives bit-identical results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import NamedTuple

import numba
import numpy as np
import polars as pl
from jaxtyping import Float32, Float64, Int32, Int64, UInt8, UInt32

from ..errors import InputError
from . import kernels
from .classes import ClassConfig, classify
from .lexical import LexicalConfig, cofired_keys, lexical_keys

_TABLE = "max-activation table"
# Features handed to a thread at a time: feature sizes are Zipf-like, so static halves of the
# feature range would leave one core idle for a long tail.
_CHUNK = 16
# Rows of a side converted to numpy at a time while grouping.
_BATCH = 1 << 22


@dataclass(frozen=True)
class PairedConfig:
    """The statistics' settings; see the module docstring."""

    # Bootstrap replicates B behind rho_lo and the ratio's interval: 200 puts the 5% bound at
    # the 10th order statistic, enough for a stable 95% tail; the bootstrap pass, most of the
    # run time, grows linearly with B (46 s for 131M rows on 2 cores at 200).
    bootstrap: int = 200
    # One-sided confidence level of rho_lo; the ratio's interval is two-sided at this level.
    level: float = 0.95
    # Seed of numpy's default_rng that draws the Poisson(1) pair weights: same seed, same bounds.
    seed: int = 0
    # When two max tokens count as the same string (lex, rho_nonlex).
    lexical: LexicalConfig = field(default_factory=LexicalConfig)

    def __post_init__(self) -> None:
        if self.bootstrap < 20:
            raise ValueError(f"bootstrap must be >= 20 replicates, got {self.bootstrap}")
        if not 0.5 < self.level < 1.0:
            raise ValueError(f"level must be in (0.5, 1), got {self.level}")


class Rows(NamedTuple):
    """Every side's rows (the languages, then the paraphrase if any) grouped by side and
    feature: side s's rows of feature f are ``start[s, f]:start[s, f + 1]``, ordered by pair
    slot, a slot being the pair's index among the scored pairs."""

    start: Int64[np.ndarray, "sides d_sae_plus_1"]
    slot: Int32[np.ndarray, " n"]
    value: Float32[np.ndarray, " n"]
    token: UInt32[np.ndarray, " n_or_0"]  # the max's token id; empty when not loaded


def paired_scores(
    maxacts: pl.DataFrame | pl.LazyFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str],
    lengths: pl.DataFrame | None = None, vocab: Mapping[int, str] | pl.DataFrame | None = None,
    paraphrase: tuple[str, str, pl.DataFrame | pl.LazyFrame] | None = None,
    config: PairedConfig = PairedConfig(), classes: ClassConfig = ClassConfig(),
) -> pl.DataFrame:
    """``paired_stats`` then ``classify``: one row per feature 0..d_sae-1, sorted by feature_id,
    with the statistics, ``rank`` and ``class``."""
    stats = paired_stats(maxacts, n_pairs=n_pairs, d_sae=d_sae, langs=langs, lengths=lengths,
                         vocab=vocab, paraphrase=paraphrase, config=config)
    return classify(stats, classes, langs)


def paired_stats(
    maxacts: pl.DataFrame | pl.LazyFrame, *, n_pairs: int, d_sae: int, langs: Sequence[str],
    lengths: pl.DataFrame | None = None, vocab: Mapping[int, str] | pl.DataFrame | None = None,
    paraphrase: tuple[str, str, pl.DataFrame | pl.LazyFrame] | None = None,
    config: PairedConfig = PairedConfig(),
) -> pl.DataFrame:
    """The statistics of every feature (module docstring), without classes.

    ``maxacts``: ``pair_id:u32, lang, feature_id:u32, value:f32`` (+ ``token_id:u32``, needed
    with ``vocab``). ``lengths``: ``pair_id, lang, n_tokens`` for each of the ``n_pairs``
    scored pairs in every language (without it rho_len is null). ``vocab``: token_id ->
    string, or the reducer's vocab table (without it lex and rho_nonlex are null).
    ``paraphrase``: (of_lang, para_lang, table), the table a max table of para_lang (a ``lang``
    column, if any, is filtered to it); without it rho_para and the ratio columns are null.
    """
    langs = list(langs)
    if len(langs) < 2 or len(set(langs)) != len(langs):
        raise InputError(_TABLE, "langs", f"need 2 or more distinct languages, got {langs}",
                         "pass the corpus languages")
    if not 1 <= d_sae < 2**31 or n_pairs < 1:
        raise InputError(_TABLE, "n_pairs/d_sae", f"n_pairs={n_pairs}, d_sae={d_sae}",
                         "pass n_pairs >= 1 and 1 <= d_sae < 2**31")
    maxacts = maxacts.lazy()
    names = maxacts.collect_schema().names()
    missing = {"pair_id", "lang", "feature_id", "value"} - set(names)
    if missing:
        raise InputError(_TABLE, ", ".join(sorted(missing)), "missing column(s)",
                         "pass the reducer's max table")
    use_tokens = vocab is not None
    if use_tokens and "token_id" not in names:
        raise InputError(_TABLE, "token_id", "missing, but a vocab was given for the "
                         "shared-string control", "rebuild the max table with token tables")
    para_frame = para_of = None
    if paraphrase is not None:
        para_of, para_lang, para_frame = paraphrase
        if para_of not in langs or para_lang in langs:
            raise InputError("paraphrase table", "language", f"({para_of!r}, {para_lang!r}) "
                             f"with langs {langs}", "paraphrase one of langs, under a new name")
        para_frame = para_frame.lazy()
        if "lang" in para_frame.collect_schema().names():
            para_frame = para_frame.filter(_lang_col(para_frame) == para_lang)

    lengths = lengths.lazy().collect() if lengths is not None else None
    ids = _universe(maxacts, lengths, para_frame, langs, n_pairs)
    to_slot = Slots.of(ids)
    sides = [(maxacts.filter(_lang_col(maxacts) == lang), f"{_TABLE}, language {lang!r}")
             for lang in langs]
    if para_frame is not None:
        sides.append((para_frame, "paraphrase table"))
    rows = _load(sides, d_sae, to_slot, use_tokens)
    lens = (_lengths(lengths, langs, ids) if lengths is not None
            else np.zeros((len(langs), 0)))
    k, para, of_lang = len(langs), -1, 0
    in_para = np.zeros(n_pairs, dtype=bool)
    if paraphrase is not None:
        para, of_lang = k, langs.index(para_of)
        in_para[_para_slots(para_frame, paraphrase[1], lengths, to_slot)] = True
        p_rows = rows.slot[rows.start[para, 0] : rows.start[para, -1]]
        if not in_para[p_rows].all():
            raise InputError("paraphrase table", "pair_id", "rows on pairs the lengths table "
                             "does not list for it", "pass the matching lengths table")

    pa, pb = (np.array(p, dtype=np.int64) for p in zip(*combinations(range(k), 2)))
    lex_keys = np.empty(0, dtype=np.int64)
    if use_tokens:
        keys = np.unique(np.concatenate([cofired_keys(rows.start[a], rows.start[b], rows.slot,
                                                      rows.token) for a, b in zip(pa, pb)]))
        lex_keys = lexical_keys(keys, vocab, config.lexical)
        del keys
    sums = kernels.Sums.empty(d_sae, k, pa.size)
    with _chunked():
        kernels.exact_sums(*rows, pa, pb, lex_keys, use_tokens, lens, lengths is not None,
                           para, of_lang, in_para, *sums)
    weights = bootstrap_weights(n_pairs, config.bootstrap, config.seed)
    total = weights.sum(axis=0, dtype=np.float64)
    total_para = weights[in_para].sum(axis=0, dtype=np.float64)
    bounds = np.full((3, d_sae), np.nan)
    with _chunked():
        kernels.bootstrap(*rows[:3], k, pa, pb, weights, total, para, of_lang, in_para,
                          total_para, config.level, bounds)
    return kernels.assemble(sums, bounds, langs=langs, n_pairs=n_pairs, lens=lens,
                            n_para=int(in_para.sum()), use_lex=use_tokens,
                            use_para=paraphrase is not None)


def bootstrap_weights(n_pairs: int, replicates: int,
                      seed: int) -> UInt8[np.ndarray, "n_pairs replicates_plus_1"]:
    """(n_pairs, replicates + 1) uint8 pair weights by slot: column 0 is all ones (the sample
    itself), column b > 0 replicate b's Poisson(1) draws."""
    rng = np.random.default_rng(seed)
    weights = np.ones((n_pairs, replicates + 1), dtype=np.uint8)
    for lo in range(0, n_pairs, 4096):  # int64 draws a block at a time
        hi = min(n_pairs, lo + 4096)
        weights[lo:hi, 1:] = np.minimum(rng.poisson(1.0, (hi - lo, replicates)), 255)
    return weights


class _chunked:
    """Numba's parallel loops hand out _CHUNK iterations at a time inside the block."""

    def __enter__(self) -> None:
        self._old = numba.get_parallel_chunksize()
        numba.set_parallel_chunksize(_CHUNK)

    def __exit__(self, *exc: object) -> None:
        numba.set_parallel_chunksize(self._old)


def _lang_col(frame: pl.LazyFrame) -> pl.Expr:
    """The lang column, comparable with a string without a string copy of the column."""
    dtype = frame.collect_schema()["lang"]
    keep = dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)
    return pl.col("lang") if keep else pl.col("lang").cast(pl.String)


def _universe(maxacts: pl.LazyFrame, lengths: pl.DataFrame | None, para: pl.LazyFrame | None,
              langs: list[str], n_pairs: int) -> UInt32[np.ndarray, " m"]:
    """The scored pairs' ids, sorted: the lengths table's (every language must list the same
    n_pairs pairs), else the ids the tables have rows for (the other scored pairs are silent
    everywhere; they get the slots after these)."""
    if lengths is not None:
        missing = {"pair_id", "lang", "n_tokens"} - set(lengths.columns)
        if missing:
            raise InputError("lengths table", ", ".join(sorted(missing)), "missing column(s)",
                             "pass the reducer's lengths table (pair_id, lang, n_tokens)")
        ids = None
        for lang in langs:
            got = np.sort(lengths.filter(pl.col("lang").cast(pl.String) == lang)["pair_id"]
                          .cast(pl.UInt32).to_numpy())
            if got.size != n_pairs or np.unique(got).size != n_pairs or (
                    ids is not None and not np.array_equal(got, ids)):
                raise InputError("lengths table", "pair_id", f"language {lang!r} lists "
                                 f"{np.unique(got).size} distinct pairs in {got.size} rows, "
                                 f"not each of the n_pairs={n_pairs} scored pairs once",
                                 "pass the lengths table of the scored pairs")
            ids = got
        return ids
    frames = [maxacts.select(pl.col("pair_id").cast(pl.UInt32))]
    if para is not None:
        frames.append(para.select(pl.col("pair_id").cast(pl.UInt32)))
    ids = pl.concat(frames).unique().collect()["pair_id"].sort().to_numpy()
    if ids.size > n_pairs:
        raise InputError(_TABLE, "pair_id", f"{ids.size} distinct pair ids but n_pairs={n_pairs}",
                         "pass the number of scored pairs")
    return ids


class Slots(NamedTuple):
    """Pair id -> slot: the sorted scored ids, and a dense lookup table (slot or -1 by id)
    when the ids are near-dense (a table beats a binary search), else empty."""

    ids: UInt32[np.ndarray, " m"]
    table: Int32[np.ndarray, " top_or_0"]

    @classmethod
    def of(cls, ids: UInt32[np.ndarray, " m"]) -> Slots:
        top = int(ids[-1]) + 1 if ids.size else 0
        table = np.empty(0, dtype=np.int32)
        if top <= max(64 * ids.size, 1 << 22):
            table = np.full(top, -1, dtype=np.int32)
            table[ids] = np.arange(ids.size, dtype=np.int32)
        return cls(ids, table)

    def __call__(self, pairs: UInt32[np.ndarray, " r"]) -> Int32[np.ndarray, " r"]:
        at = np.minimum(np.searchsorted(self.ids, pairs), max(self.ids.size - 1, 0))
        return np.where(self.ids[at] == pairs, at, -1).astype(np.int32)


def _load(sides: list[tuple[pl.LazyFrame, str]], d_sae: int, to_slot: Slots,
          tokens: bool) -> Rows:
    """Every side's rows, validated and grouped by feature into one set of arrays (a counting
    sort, side by side: the table's own order is kept within a feature, and fixed where it is
    not by pair). Only one side's raw columns are in memory at a time."""
    sizes = [frame.select(pl.len()).collect().item() for frame, _ in sides]
    n = sum(sizes)
    start = np.zeros((len(sides), d_sae + 1), dtype=np.int64)
    slot, value = np.empty(n, np.int32), np.empty(n, np.float32)
    token = np.empty(n if tokens else 0, np.uint32)
    at = 0
    for i, ((frame, source), size) in enumerate(zip(sides, sizes)):
        names = frame.collect_schema().names()
        tok = (pl.col("token_id").cast(pl.UInt32) if "token_id" in names
               else pl.lit(0, dtype=pl.UInt32).alias("token_id"))
        part = frame.select(pl.col("feature_id").cast(pl.UInt32),
                            pl.col("pair_id").cast(pl.UInt32), pl.col("value").cast(pl.Float32),
                            *([tok] if tokens else [])).collect()
        if part.height == 0 or part.height != size:
            raise InputError(source, "rows", "none" if part.height == 0 else "changed while read",
                             "check langs against the table")
        if part.null_count().sum_horizontal().item() > 0:
            raise InputError(source, "rows", "null entries", "rebuild the table")
        # In batches: a parquet read comes in chunks, and a whole column as one numpy array
        # would be a copy of a side's ~10^8 rows.
        counts = np.zeros(d_sae, dtype=np.int64)
        for batch in part.iter_slices(_BATCH):
            feature, v = batch["feature_id"].to_numpy(), batch["value"].to_numpy()
            if not (np.isfinite(v).all() and (v > 0).all()):
                raise InputError(source, "value", "values <= 0 or not finite (absent rows mean "
                                 "0)", "keep only the rows where the max is > 0")
            if int(feature.max()) >= d_sae:
                raise InputError(source, "feature_id", f"{int(feature.max())} >= d_sae={d_sae}",
                                 "pass the SAE's d_sae")
            counts += np.bincount(feature, minlength=d_sae)
        start[i, 0] = at
        np.cumsum(counts, out=start[i, 1:])
        start[i, 1:] += at
        pos = start[i, :-1].copy()
        for batch in part.iter_slices(_BATCH):
            t = batch["token_id"].to_numpy() if tokens else np.empty(0, np.uint32)
            if kernels.group_rows(batch["feature_id"].to_numpy(), batch["pair_id"].to_numpy(),
                                  batch["value"].to_numpy(), t, pos, *to_slot, slot, value,
                                  token):
                raise InputError(source, "pair_id", "pairs missing from the lengths table",
                                 "pass the lengths table of the same pairs")
        at += size
        del part
    rows = Rows(start, slot, value, token)
    if kernels.order_within(*rows):
        raise InputError(_TABLE, "rows", "duplicate (pair_id, lang, feature_id) rows",
                         "rebuild the table with reduce")
    return rows


def _para_slots(para: pl.LazyFrame, para_lang: str, lengths: pl.DataFrame | None,
                to_slot: Slots) -> Int32[np.ndarray, " m"]:
    """The slots of the pairs the paraphrase covers: those the lengths table lists for it,
    else those its table has rows for."""
    listed = (lengths.filter(pl.col("lang").cast(pl.String) == para_lang)["pair_id"]
              if lengths is not None else None)
    if listed is None or listed.len() == 0:
        listed = para.select(pl.col("pair_id").unique()).collect()["pair_id"]
    slots = to_slot(listed.cast(pl.UInt32).to_numpy())
    if (slots < 0).any():
        raise InputError("paraphrase table", "pair_id", "pairs that are not scored pairs",
                         "pass the paraphrase of the scored pairs")
    return slots


def _lengths(lengths: pl.DataFrame, langs: list[str], ids: UInt32[np.ndarray, " n"]
             ) -> Float64[np.ndarray, "k n"]:
    """(languages, n_pairs) float64 sentence lengths by slot (``_universe`` checked coverage)."""
    out = np.empty((len(langs), ids.size))
    for row, lang in enumerate(langs):
        part = lengths.filter(pl.col("lang").cast(pl.String) == lang)
        if part["n_tokens"].null_count():
            raise InputError("lengths table", "n_tokens", "null entries", "rebuild it")
        at = np.searchsorted(ids, part["pair_id"].cast(pl.UInt32).to_numpy())
        out[row, at] = part["n_tokens"].cast(pl.Float64).to_numpy()
    return out
