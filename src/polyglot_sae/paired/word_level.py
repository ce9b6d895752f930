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

Memory is bounded by one extraction shard: every sum is accumulated shard by shard (the
bootstrap as a sparse (features x pairs) by dense (pairs x replicates) product per shard).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import polars as pl
import scipy.sparse as sp
from jaxtyping import Float64, UInt8

from ..align.segment import fold_word
from ..errors import InputError
from .kernels import min_over, pearson
from .stats import bootstrap_weights

_SUMS = ("sx", "sy", "sxx", "syy", "sxy")
EXAMPLES_SCHEMA = {"feature_id": pl.UInt32, "langs": pl.String, "pair_id": pl.UInt32,
                   "word_a": pl.UInt16, "word_b": pl.UInt16, "x": pl.Float32, "y": pl.Float32}


class _Accumulator:
    """One language pair's running sums over shards."""

    def __init__(self, d_sae: int, replicates: int) -> None:
        self.boot = {k: np.zeros((d_sae, replicates + 1)) for k in _SUMS}
        self.n_boot = np.zeros(replicates + 1)
        self.count = {k: np.zeros(d_sae) for k in
                      ("cofire", "same", "src_ab", "hit_ab", "other_ab", "src_ba", "hit_ba",
                       "other_ba")}
        self.examples: list[pl.DataFrame] = []


def word_level_stats(shards: Sequence[tuple[pl.LazyFrame, pl.DataFrame]],
                     links: Mapping[tuple[str, str], pl.DataFrame], texts: pl.DataFrame, *,
                     scored: np.ndarray, d_sae: int, langs: Sequence[str], replicates: int = 200,
                     level: float = 0.95, seed: int = 0, n_examples: int = 3,
                     ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-feature statistics, top co-fired links per feature and language pair).

    ``shards``: per extraction shard, (its activation rows ``pair_id, lang, token_pos,
    feature_id, value``, its token-to-word map ``pair_id, lang, token_pos, word``);
    ``links``: (a, b) -> link table of the align stage; ``texts``: ``pair_id, lang, text``
    of the scored pairs; ``scored``: the scored pair ids (the bootstrap's verses).
    """
    langs = list(langs)
    scored = np.sort(np.asarray(scored, dtype=np.int64))
    weights = bootstrap_weights(scored.size, replicates, seed)
    n_words = _word_counts(shards)
    acc = {pair: _Accumulator(d_sae, replicates) for pair in combinations(langs, 2)}
    fired = {lang: np.zeros(d_sae) for lang in langs}
    for acts, tokmap in shards:
        word_acts = (acts.join(tokmap.lazy(), on=["pair_id", "lang", "token_pos"])
                     .group_by("pair_id", "lang", "word", "feature_id")
                     .agg(pl.col("value").max()).collect())
        # per (feature, pair) and language, the verse's words on which the feature fires
        k = {lang: word_acts.filter(pl.col("lang") == lang).group_by("feature_id", "pair_id")
             .agg(k=pl.len()) for lang in langs}
        for lang in langs:
            fired[lang] += np.bincount(k[lang]["feature_id"].to_numpy(),
                                       weights=k[lang]["k"].to_numpy(), minlength=d_sae)
        pair_ids = tokmap["pair_id"].unique()
        for (a, b), state in acc.items():
            part = _covered(links[(a, b)].filter(pl.col("pair_id").is_in(pair_ids.implode())),
                            tokmap, a, b)
            if part.height:
                _add_shard(state, part, word_acts, k, n_words, a, b, scored, weights, d_sae,
                           texts, n_examples)
    return _assemble(acc, fired, n_words, langs, d_sae, level), _examples(acc, n_examples)


def _word_counts(shards: Sequence[tuple[pl.LazyFrame, pl.DataFrame]]) -> pl.DataFrame:
    """``pair_id, lang, m``: the words of each scored sentence that the tokens cover."""
    return pl.concat([t.group_by("pair_id", "lang").agg(m=pl.col("word").n_unique())
                      for _, t in shards])


def _covered(part: pl.DataFrame, tokmap: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    """The links whose two words are both within the extracted tokens (a sentence cut at
    ``extract.max_tokens`` loses its last words: their activations are unknown, not 0)."""
    for lang, col in ((a, "word_a"), (b, "word_b")):
        seen = (tokmap.filter(pl.col("lang") == lang)
                .select("pair_id", pl.col("word").cast(pl.UInt16).alias(col)).unique())
        part = part.join(seen, on=["pair_id", col], how="semi", maintain_order="left")
    return part


def _sides(part: pl.DataFrame, word_acts: pl.DataFrame, a: str, b: str
           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(X, Y, XY): per link and feature, the source word's activation where it fires
    (``link, pair_id, feature_id, x``), the target word's (``y``), and both where both fire.
    No row for a link where a side is silent: the sums need only these (zeros add nothing)."""
    side = []
    for lang, col, name in ((a, "word_a", "x"), (b, "word_b", "y")):
        acts = word_acts.filter(pl.col("lang") == lang).select(
            "pair_id", pl.col("word").alias(col), "feature_id",
            pl.col("value").cast(pl.Float64).alias(name))
        side.append(part.select("link", "pair_id", col).join(acts, on=["pair_id", col])
                    .drop(col))
    both = side[0].join(side[1].drop("pair_id"), on=["link", "feature_id"])
    return side[0], side[1], both


def _per_pair(rows: pl.DataFrame, **sums: pl.Expr) -> pl.DataFrame:
    """Sums per (feature, pair), sorted so that features are CSR rows."""
    return rows.group_by("feature_id", "pair_id").agg(**sums).sort("feature_id", "pair_id")


def _add_shard(state: _Accumulator, part: pl.DataFrame, word_acts: pl.DataFrame,
               k: Mapping[str, pl.DataFrame], n_words: pl.DataFrame, a: str, b: str, scored: np.ndarray,
               weights: UInt8[np.ndarray, "n_pairs b1"], d_sae: int, texts: pl.DataFrame,
               n_examples: int) -> None:
    part = part.with_row_index("link")
    xs, ys, both = _sides(part, word_acts, a, b)
    local = np.unique(np.searchsorted(scored, part["pair_id"].unique().to_numpy()))
    w = weights[local].astype(np.float64)
    links_per = part.group_by("pair_id").len().sort("pair_id")
    link_slots = np.searchsorted(scored, links_per["pair_id"].to_numpy())
    state.n_boot += links_per["len"].to_numpy().astype(np.float64) @ weights[link_slots]

    # the bootstrap: per (feature, pair) sums as sparse (features x the shard's pairs)
    # matrices times the pairs' weights
    x, y = pl.col("x"), pl.col("y")
    for table, sums in ((xs, {"sx": x.sum(), "sxx": (x * x).sum()}),
                        (ys, {"sy": y.sum(), "syy": (y * y).sum()}),
                        (both, {"sxy": (x * y).sum()})):
        per = _per_pair(table, **sums)
        col = np.searchsorted(local, np.searchsorted(scored, per["pair_id"].to_numpy()))
        indptr = np.zeros(d_sae + 1, dtype=np.int64)
        np.cumsum(np.bincount(per["feature_id"].to_numpy(), minlength=d_sae), out=indptr[1:])
        for name in sums:
            m = sp.csr_matrix((per[name].to_numpy(), col, indptr), shape=(d_sae, local.size))
            state.boot[name] += m @ w

    same = pl.Series("same", _same_string(part, texts, a, b))
    f_both = both["feature_id"].to_numpy().astype(np.int64)
    state.count["cofire"] += np.bincount(f_both, minlength=d_sae)
    state.count["same"] += np.bincount(f_both[same.gather(both["link"]).to_numpy()],
                                       minlength=d_sae)
    for direction, src, trg_lang in (("ab", xs, b), ("ba", ys, a)):
        _lift(state, direction, src, both, k[trg_lang], n_words, trg_lang, d_sae)
    if n_examples:
        # ties (the same word at the start of many verses) broken by pair and link, so the
        # table is the same from run to run whatever order the joins return
        top = (both.with_columns(xy=x * y)
               .sort(["xy", "pair_id", "link"], descending=[True, False, False])
               .group_by("feature_id", maintain_order=True).head(n_examples)
               .join(part.select("link", "word_a", "word_b"), on="link"))
        state.examples.append(top.select(
            pl.col("feature_id").cast(pl.UInt32), pl.lit(f"{a}-{b}").alias("langs"),
            pl.col("pair_id").cast(pl.UInt32), pl.col("word_a").cast(pl.UInt16),
            pl.col("word_b").cast(pl.UInt16), pl.col("x").cast(pl.Float32),
            pl.col("y").cast(pl.Float32)))


def _lift(state: _Accumulator, direction: str, src: pl.DataFrame, both: pl.DataFrame,
          k: pl.DataFrame, n_words: pl.DataFrame, trg_lang: str, d_sae: int) -> None:
    """align_lift's sums for one direction, from per (feature, pair) counts: c source words
    firing on a link, h of them with the aligned target word firing, k target words firing
    among the verse's m: hits h, and the other target words' share sum((k - hit) / (m - 1))
    over the c firings = (c k - h) / (m - 1)."""
    m = n_words.filter(pl.col("lang") == trg_lang).select("pair_id", "m")
    per = (src.group_by("feature_id", "pair_id").agg(c=pl.len())
           .join(both.group_by("feature_id", "pair_id").agg(h=pl.len()),
                 on=["feature_id", "pair_id"], how="left")
           .join(k, on=["feature_id", "pair_id"], how="left")
           .join(m, on="pair_id", how="left")
           .with_columns(pl.col("h", "k").fill_null(0), pl.col("m").fill_null(1)))
    c, h, kk, mm = (per[name].to_numpy().astype(np.float64) for name in ("c", "h", "k", "m"))
    other = np.where(mm > 1, (c * kk - h) / np.maximum(mm - 1, 1), 0.0)
    f = per["feature_id"].to_numpy().astype(np.int64)
    state.count[f"src_{direction}"] += np.bincount(f, weights=c, minlength=d_sae)
    state.count[f"hit_{direction}"] += np.bincount(f, weights=h, minlength=d_sae)
    state.count[f"other_{direction}"] += np.bincount(f, weights=other, minlength=d_sae)


def _same_string(part: pl.DataFrame, texts: pl.DataFrame, a: str, b: str) -> np.ndarray:
    """Per link: are its two words the same string after folding?"""
    text = {(int(p), str(lang)): t for p, lang, t in
            texts.filter(pl.col("pair_id").is_in(part["pair_id"].unique().implode()))
            .select("pair_id", "lang", "text").iter_rows()}
    out = np.zeros(part.height, dtype=bool)
    for i, (p, sa, ea, sb, eb) in enumerate(part.select(
            "pair_id", "start_a", "end_a", "start_b", "end_b").iter_rows()):
        out[i] = fold_word(text[(p, a)][sa:ea]) == fold_word(text[(p, b)][sb:eb])
    return out


def percentile_bound(replicates: Float64[np.ndarray, "d b"], level: float) -> np.ndarray:
    """The floor((B+1)(1 - level))-th smallest replicate per row (NaN counts as 0)."""
    b = replicates.shape[1]
    q = max(int(np.floor((b + 1) * (1 - level))), 1)
    return np.sort(np.nan_to_num(replicates, nan=0.0), axis=1)[:, q - 1]


def _assemble(acc: Mapping[tuple[str, str], _Accumulator], fired: Mapping[str, np.ndarray],
              n_words: pl.DataFrame, langs: list[str], d_sae: int, level: float) -> pl.DataFrame:
    per = []
    for state in acc.values():
        s, n = state.boot, state.n_boot
        r_all = pearson(n[None, :], s["sx"], s["sxx"], s["sy"], s["syy"], s["sxy"])
        c = state.count
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
    totals = n_words.group_by("lang").agg(pl.col("m").sum())
    total = dict(zip(totals["lang"].to_list(), totals["m"].to_list()))
    for lang in langs:
        out[f"word_density_{lang}"] = fired[lang] / max(total.get(lang, 0), 1)
    frame = pl.DataFrame(out)
    nullable = ["r_word", "r_word_lo", "align_lift", "lex_word"]
    return frame.with_columns(pl.col(c).fill_nan(None) for c in nullable).with_columns(
        pl.when(pl.col("r_word").is_null()).then(None).otherwise(pl.col("r_word_lo"))
        .alias("r_word_lo"))


def _examples(acc: Mapping[tuple[str, str], _Accumulator], n_examples: int) -> pl.DataFrame:
    frames = [e for state in acc.values() for e in state.examples]
    if not frames:
        return pl.DataFrame(schema=EXAMPLES_SCHEMA)
    return (pl.concat(frames).sort(["feature_id", "langs", pl.col("x") * pl.col("y"),
                                    "pair_id", "word_a"],
                                   descending=[False, False, True, False, False])
            .group_by("feature_id", "langs", maintain_order=True).head(n_examples)
            .select(list(EXAMPLES_SCHEMA)))


def check_tables(links: Mapping[tuple[str, str], pl.DataFrame], langs: Sequence[str]) -> None:
    """Every language pair has a link table with the align stage's columns."""
    for a, b in combinations(list(langs), 2):
        table = links.get((a, b))
        need = {"pair_id", "word_a", "word_b", "start_a", "end_a", "start_b", "end_b"}
        if table is None or need - set(table.columns):
            problem = "missing" if table is None else f"lacks {sorted(need - set(table.columns))}"
            raise InputError(f"align/{a}-{b}.parquet", "columns", problem,
                             "rebuild it with the align rule")
