"""Word-level evidence: does a feature fire on the *translation of a word*, not only on the same
verses? Computed from the extraction tables and the corpus' word links (no model pass).

Word activation. A word's activation is the max of the feature over the word's tokens
(``align.words_of_tokens``); 0 where it does not fire. Links are those of the scored pairs in
``results/{corpus}/align/{a}-{b}.parquet``; for link l = (pair, word u in a, word v in b) let
x_l, y_l be the feature's activations on u and v.

Per feature and language pair (for three or more languages the minimum over pairs, the
shared-string share the maximum, as ``paired`` does):

    n_links         links of the scored pairs (the sample; the same for every feature)
    n_cofire_word   links where both words fire
    r_word          Pearson's r of x and y over all links, zeros included, from the sums
                    (n, Σx, Σy, Σx², Σy², Σxy) over the nonzero rows only; null at zero variance
    r_word_lo       its one-sided ``level`` percentile bootstrap bound, resampling verses: the
                    Poisson(1) pair weights of ``paired`` (same seed, same replicates), a
                    replicate's sums being the weighted sums of per-pair sums; a replicate with
                    zero variance counts as r* = 0; the floor((B+1)(1-level))-th smallest r*
    align_lift      given the feature fires on the source word (x > 0), how much more often it
                    fires on the aligned target word than on the other words of the same target
                    verse: mean[y > 0] - mean[(k - [y > 0]) / (m - 1)], k the target verse's
                    firing words, m its words; the smaller of the two directions. ~0 for a
                    feature that fires on every word (dense) or on every word of some verses
                    (topic, position), near 1 for a word-translation feature
    lex_word        share of the co-fired links whose two words are the same string after
                    folding (``align.fold_word``: names, numbers, cognates spelt alike)
    word_density_L  share of the scored pairs' words in L on which the feature fires

Memory is bounded by one extraction shard: every sum is accumulated shard by shard, a
shard's word activations held feature-major and passed over by the compiled kernels of
``word_kernels`` (a feature's per-pair sums folded into its bootstrap row pair by pair).
The bootstrap sums are d_sae x 5 x (B + 1) float64 per language pair (2.1 GB at 262,144
latents and B = 200, 8.4 GB at 1M): wider SAEs are done in blocks of features whose sums fit
``WORD_BLOCK_BYTES``, one pass over the shards per block (every statistic is per feature).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import NamedTuple

import numba
import numpy as np
import polars as pl
from jaxtyping import Float64, Int64, UInt8

from ..align.segment import fold_word
from ..errors import InputError
from . import word_kernels
from .kernels import min_over, pearson
from .stats import bootstrap_weights
from .word_kernels import COUNTS, SUMS

# Bootstrap sums of one block of features (per language pair) stay under this many bytes.
WORD_BLOCK_BYTES = 1 << 30

EXAMPLES_SCHEMA = {"feature_id": pl.UInt32, "langs": pl.String, "pair_id": pl.UInt32,
                   "word_a": pl.UInt16, "word_b": pl.UInt16, "x": pl.Float32, "y": pl.Float32}


class _Accumulator:
    """One language pair's running sums over shards."""

    def __init__(self, d_sae: int, replicates: int, n_examples: int) -> None:
        self.boot = np.zeros((d_sae, len(SUMS), replicates + 1))
        self.n_boot = np.zeros(replicates + 1)
        self.counts = np.zeros((d_sae, len(COUNTS)))
        self.ex_xy = np.full((d_sae, n_examples), -np.inf)
        self.ex_x, self.ex_y = np.zeros((2, d_sae, n_examples))
        self.ex_pair, self.ex_wa, self.ex_wb = np.full((3, d_sae, n_examples), -1, np.int64)


class _Shard(NamedTuple):
    """One shard's word activations, feature-major (``word_kernels``), and its word slots."""

    pairs: Int64[np.ndarray, " p"]  # the shard's pair ids, sorted
    ptr: Int64[np.ndarray, " d1"]  # CSR over features of the rows below
    slot: Int64[np.ndarray, " r"]
    value: Float64[np.ndarray, " r"]
    base: Int64[np.ndarray, "p k"]  # the first slot of each (pair, language)
    words: Int64[np.ndarray, "p k"]  # m: the words the tokens cover
    slot_pair: Int64[np.ndarray, " s"]
    slot_lang: Int64[np.ndarray, " s"]
    slot_word: Int64[np.ndarray, " s"]


def word_level_stats(shards: Sequence[tuple[pl.LazyFrame, pl.DataFrame]],
                     links: Mapping[tuple[str, str], pl.DataFrame], texts: pl.DataFrame, *,
                     scored: np.ndarray, d_sae: int, langs: Sequence[str], replicates: int = 200,
                     level: float = 0.95, seed: int = 0, n_examples: int = 3,
                     feature_block: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-feature statistics, top co-fired links per feature and language pair).

    ``shards``: per extraction shard, (its activation rows ``pair_id, lang, token_pos,
    feature_id, value``, its token-to-word map ``pair_id, lang, token_pos, word``);
    ``links``: (a, b) -> link table of the align stage; ``texts``: ``pair_id, lang, text``
    of the scored pairs; ``scored``: the scored pair ids (the bootstrap's verses);
    ``feature_block``: features per pass (default: bootstrap sums under WORD_BLOCK_BYTES).
    """
    block = feature_block or max(1, WORD_BLOCK_BYTES // (len(SUMS) * (replicates + 1) * 8))
    if d_sae > block:  # one pass over the shards per block of features (module docstring)
        parts = []
        for lo in range(0, d_sae, block):
            hi = min(d_sae, lo + block)
            part = [(acts.filter(pl.col("feature_id").is_between(lo, hi, closed="left"))
                     .with_columns((pl.col("feature_id") - lo).cast(pl.UInt32)), tokmap)
                    for acts, tokmap in shards]
            parts.append(word_level_stats(
                part, links, texts, scored=scored, d_sae=hi - lo, langs=langs,
                replicates=replicates, level=level, seed=seed, n_examples=n_examples,
                feature_block=hi - lo))
            parts[-1] = tuple(t.with_columns(pl.col("feature_id") + lo) for t in parts[-1])
        return pl.concat([p[0] for p in parts]), pl.concat([p[1] for p in parts])
    langs = list(langs)
    scored = np.sort(np.asarray(scored, dtype=np.int64))
    weights = bootstrap_weights(scored.size, replicates, seed)
    acc = {pair: _Accumulator(d_sae, replicates, n_examples) for pair in combinations(langs, 2)}
    fired = np.zeros((len(langs), d_sae))
    words = np.zeros(len(langs))
    # per language pair, once: the links of scored pairs
    scored_links = {pair: links[pair].filter(pl.col("pair_id").is_in(scored)) for pair in acc}
    for acts, tokmap in shards:
        shard = _shard_words(acts, tokmap, langs, d_sae)
        row_feature = np.repeat(np.arange(d_sae), np.diff(shard.ptr))
        row_lang = shard.slot_lang[shard.slot]
        for i in range(len(langs)):
            fired[i] += np.bincount(row_feature[row_lang == i], minlength=d_sae)
        words += shard.words.sum(axis=0)
        for (a, b), state in acc.items():
            part = _covered(scored_links[(a, b)].filter(pl.col("pair_id").is_in(shard.pairs)),
                            tokmap, a, b)
            if part.height:
                _add_shard(state, shard, part, langs.index(a), langs.index(b), scored,
                           weights, texts, a, b)
    return (_assemble(acc, fired, words, langs, d_sae, level),
            _examples(acc, n_examples))


def _shard_words(acts: pl.LazyFrame, tokmap: pl.DataFrame, langs: list[str],
                 d_sae: int) -> _Shard:
    code = {lang: i for i, lang in enumerate(langs)}
    k = len(langs)
    tm = tokmap.filter(pl.col("lang").is_in(langs))
    pairs = np.unique(tm["pair_id"].to_numpy()).astype(np.int64)
    group = (np.searchsorted(pairs, tm["pair_id"].to_numpy()) * k
             + tm["lang"].replace_strict(code, return_dtype=pl.Int64).to_numpy())
    word = tm["word"].to_numpy().astype(np.int64)
    token = tm["token_pos"].to_numpy().astype(np.int64)
    n_groups = pairs.size * k
    width = np.zeros(n_groups, np.int64)
    np.maximum.at(width, group, word + 1)
    base = np.zeros(n_groups, np.int64)
    np.cumsum(width[:-1], out=base[1:])
    slot_group = np.repeat(np.arange(n_groups), width)
    slot_word = np.arange(slot_group.size) - base[slot_group]
    # a token may cover several words: the token's rows go to each (a CSR over tokens)
    span = int(token.max()) + 1 if token.size else 1
    key = group * span + token
    order = np.argsort(key, kind="stable")
    tok_slots = (base[group] + word)[order]
    tok_start = np.searchsorted(key[order], np.arange(n_groups * span + 1))
    word_span = int(word.max()) + 1 if word.size else 1
    seen = np.unique(group * word_span + word)
    words = np.bincount(seen // word_span, minlength=n_groups)

    rows = acts.select(
        "pair_id", pl.col("lang").cast(pl.String).replace_strict(
            code, default=-1, return_dtype=pl.Int64).alias("li"),
        "token_pos", "feature_id", "value").collect()
    pair = rows["pair_id"].to_numpy().astype(np.int64)
    at = np.minimum(np.searchsorted(pairs, pair), max(pairs.size - 1, 0))
    lang, tok = rows["li"].to_numpy(), rows["token_pos"].to_numpy().astype(np.int64)
    ok = (pairs.size > 0) & (pairs[at] == pair) & (lang >= 0) & (tok < span)
    rkey = np.where(ok, (at * k + lang) * span + np.minimum(tok, span - 1), 0)
    n_of = np.where(ok, tok_start[rkey + 1] - tok_start[rkey], 0)
    src = np.repeat(np.arange(pair.size), n_of)
    first = np.repeat(tok_start[rkey] - np.cumsum(n_of) + n_of, n_of)
    slot = tok_slots[first + np.arange(src.size)] if src.size else np.zeros(0, np.int64)
    ptr, slot, value = word_kernels.group_words(
        rows["feature_id"].to_numpy()[src].astype(np.int64), slot,
        rows["value"].to_numpy()[src].astype(np.float32), d_sae)
    return _Shard(pairs, ptr, slot, value, base.reshape(-1, k), words.reshape(-1, k),
                  slot_group // k, slot_group % k, slot_word)


def _covered(part: pl.DataFrame, tokmap: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    """The links whose two words are both within the extracted tokens (a sentence cut at
    ``extract.max_tokens`` loses its last words: their activations are unknown, not 0)."""
    for lang, col in ((a, "word_a"), (b, "word_b")):
        seen = (tokmap.filter(pl.col("lang") == lang)
                .select("pair_id", pl.col("word").cast(pl.UInt16).alias(col)).unique())
        part = part.join(seen, on=["pair_id", col], how="semi", maintain_order="left")
    return part


def _add_shard(state: _Accumulator, shard: _Shard, part: pl.DataFrame, ia: int, ib: int,
               scored: np.ndarray, weights: UInt8[np.ndarray, "n_pairs b1"],
               texts: pl.DataFrame, a: str, b: str) -> None:
    pair = part["pair_id"].to_numpy().astype(np.int64)
    p = np.searchsorted(shard.pairs, pair)
    word_a = part["word_a"].to_numpy().astype(np.int64)
    word_b = part["word_b"].to_numpy().astype(np.int64)
    slot_a, slot_b = shard.base[p, ia] + word_a, shard.base[p, ib] + word_b
    n_slots = shard.slot_pair.size
    a_ptr = np.zeros(n_slots + 1, np.int64)
    np.cumsum(np.bincount(slot_a, minlength=n_slots), out=a_ptr[1:])
    pair_wrow = np.full(shard.pairs.size, -1, np.int64)
    pair_wrow[p] = np.searchsorted(scored, pair)
    rows, per_row = np.unique(pair_wrow[p], return_counts=True)
    state.n_boot += per_row.astype(np.float64) @ weights[rows]
    word_kernels.link_sums(
        shard.ptr, shard.slot, shard.value, shard.slot_pair, shard.slot_lang, shard.slot_word,
        ia, ib, a_ptr, np.argsort(slot_a, kind="stable"),
        np.bincount(slot_b, minlength=n_slots).astype(np.float64), word_a, word_b,
        _same_string(part, texts, a, b).astype(np.float64), shard.pairs, pair_wrow,
        shard.words[:, ia], shard.words[:, ib], weights, int(shard.slot_word.max()) + 1,
        min(shard.ptr.size - 1, 8 * numba.get_num_threads()),
        state.boot, state.counts, state.ex_xy, state.ex_x, state.ex_y, state.ex_pair,
        state.ex_wa, state.ex_wb)


def _same_string(part: pl.DataFrame, texts: pl.DataFrame, a: str, b: str) -> np.ndarray:
    """Per link: are its two words the same string after folding (each distinct word folded
    once)?"""
    sides = []
    for lang, start, end in ((a, "start_a", "end_a"), (b, "start_b", "end_b")):
        text = texts.filter(pl.col("lang") == lang).select("pair_id", "text")
        sides.append(part.select("pair_id", start, end)
                     .join(text, on="pair_id", how="left", maintain_order="left")
                     .select(pl.col("text").str.slice(pl.col(start), pl.col(end) - pl.col(start)))
                     .to_series())
    distinct = pl.concat(sides).unique().to_list()
    folded = dict(zip(distinct, map(fold_word, distinct)))
    return (sides[0].replace_strict(folded) == sides[1].replace_strict(folded)).to_numpy()


def percentile_bound(replicates: Float64[np.ndarray, "d b"], level: float) -> np.ndarray:
    """The floor((B+1)(1 - level))-th smallest replicate per row (NaN counts as 0)."""
    b = replicates.shape[1]
    q = max(int(np.floor((b + 1) * (1 - level))), 1)
    return np.sort(np.nan_to_num(replicates, nan=0.0), axis=1)[:, q - 1]


def _assemble(acc: Mapping[tuple[str, str], _Accumulator], fired: Float64[np.ndarray, "k d"],
              words: Float64[np.ndarray, " k"], langs: list[str], d_sae: int,
              level: float) -> pl.DataFrame:
    per = []
    for state in acc.values():
        s, n = {name: state.boot[:, i] for i, name in enumerate(SUMS)}, state.n_boot
        r_all = pearson(n[None, :], s["sx"], s["sxx"], s["sy"], s["syy"], s["sxy"])
        c = dict(zip(COUNTS, state.counts.T))
        with np.errstate(invalid="ignore", divide="ignore"):
            lifts = [c[f"hit_{d}"] / c[f"src_{d}"] - c[f"other_{d}"] / c[f"src_{d}"]
                     for d in ("ab", "ba")]
            lex = np.where(c["cofire"] > 0, c["same"] / c["cofire"], np.nan)
        per.append({"n_links": np.full(d_sae, n[0]), "n_cofire_word": c["cofire"],
                    "r_word": r_all[:, 0], "r_word_lo": percentile_bound(r_all[:, 1:], level),
                    "align_lift": min_over(lifts),
                    "lex_word": lex})
    out = {"feature_id": np.arange(d_sae, dtype=np.uint32)}
    for name in ("n_links", "n_cofire_word"):
        out[name] = np.min([p[name] for p in per], axis=0).astype(np.int64)
    for name in ("r_word", "r_word_lo", "align_lift"):
        out[name] = min_over([p[name] for p in per])
    out["lex_word"] = np.fmax.reduce([p["lex_word"] for p in per])
    for i, lang in enumerate(langs):
        out[f"word_density_{lang}"] = fired[i] / max(words[i], 1)
    frame = pl.DataFrame(out)
    nullable = ["r_word", "r_word_lo", "align_lift", "lex_word"]
    return frame.with_columns(pl.col(c).fill_nan(None) for c in nullable).with_columns(
        pl.when(pl.col("r_word").is_null()).then(None).otherwise(pl.col("r_word_lo"))
        .alias("r_word_lo"))


def _examples(acc: Mapping[tuple[str, str], _Accumulator], n_examples: int) -> pl.DataFrame:
    frames = []
    for (a, b), state in acc.items():
        feature, rank = np.nonzero(np.isfinite(state.ex_xy))
        frames.append(pl.DataFrame({
            "feature_id": feature.astype(np.uint32), "langs": f"{a}-{b}",
            "pair_id": state.ex_pair[feature, rank].astype(np.uint32),
            "word_a": state.ex_wa[feature, rank].astype(np.uint16),
            "word_b": state.ex_wb[feature, rank].astype(np.uint16),
            "x": state.ex_x[feature, rank].astype(np.float32),
            "y": state.ex_y[feature, rank].astype(np.float32)}, schema=EXAMPLES_SCHEMA))
    if not frames or not n_examples:
        return pl.DataFrame(schema=EXAMPLES_SCHEMA)
    return pl.concat(frames).sort("feature_id", "langs", maintain_order=True)


def check_tables(links: Mapping[tuple[str, str], pl.DataFrame], langs: Sequence[str]) -> None:
    """Every language pair has a link table with the align stage's columns."""
    for a, b in combinations(list(langs), 2):
        table = links.get((a, b))
        need = {"pair_id", "word_a", "word_b", "start_a", "end_a", "start_b", "end_b"}
        if table is None or need - set(table.columns):
            problem = "missing" if table is None else f"lacks {sorted(need - set(table.columns))}"
            raise InputError(f"align/{a}-{b}.parquet", "columns", problem,
                             "rebuild it with the align rule")
