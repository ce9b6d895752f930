"""The data model of the feature pages and the Polars queries that gather it; no HTML here
(``pages`` renders it), so stages that only build page entries import this without Jinja.

Which features: those with ``rank < top_n`` in rank order, the ``top_significant`` best-ranked
ones with ``q < q_threshold``, then any ids the user lists (dead ones or ones beyond top_n
included) by rank, dead ones last.

Per feature and language, over all scored pairs (BOS excluded): pairs and tokens on which it
fires against the language's totals, its max activation and a histogram of the firing tokens'
values over [0, the feature's max over all languages]; the ``n_examples`` pairs with the largest
max activation in that language, each with every language's sentence and per-token values; and
the distinct tokens among its ``_TOKEN_CANDIDATES`` strongest activations. Two score families are
accepted: the BI methods (bi_score, jsd, idaf, beta) and the paired method (class, rho, rho_lo,
...), told apart by a ``rho`` column. All queries over the activation shards are lazy and
collected together, so only the page features' rows are ever held in memory.
"""

from __future__ import annotations

import math
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import polars as pl
from jaxtyping import Int64

from polyglot_sae.errors import InputError
from polyglot_sae.report.examples import display_piece

Frame = pl.DataFrame | pl.LazyFrame

# Candidates per (feature, language) among which the index's top tokens are picked: enough to
# find a few distinct tokens, bounded so no join with the token table grows with the corpus.
_TOKEN_CANDIDATES = 64


@dataclass(frozen=True)
class FeaturePagesConfig:
    """Which features get pages and what the pages show."""

    # Features with rank < top_n (rank is 0-based among alive features) get pages.
    top_n: int = 100
    # Also the best-ranked features with q < q_threshold (when the scores have a null), so the
    # pages show significant features the rare, rejected ones push down the ranking.
    top_significant: int = 0
    # Further feature ids to show whatever their rank (dead ones too), e.g. from a user's list.
    features: tuple[int, ...] = ()
    # Pairs per language section of a feature page: the top ones by that language's max activation.
    n_examples: int = 10
    # Distinct tokens per language in the index's "top tokens" column.
    n_top_tokens: int = 3
    # Bars of each density histogram; bins split [0, the feature's max over all languages].
    histogram_bins: int = 24
    # Neuronpedia page of a feature, with a {feature} field, e.g. from neuronpedia_template().
    # Only for SAEs Neuronpedia hosts (a self-trained SAE has no page there): None = no link.
    neuronpedia_url: str | None = None
    # Heading of the index and prefix of every page title.
    title: str = "Bilingual SAE features"
    # q-value cut of the index's "significant only" checkbox.
    q_threshold: float = 0.05

    def __post_init__(self) -> None:
        for name in ("top_n", "top_significant", "n_examples", "n_top_tokens"):
            if getattr(self, name) < 0:
                raise InputError("config", f"feature_pages.{name}", f"{getattr(self, name)} < 0",
                                 "use a count >= 0")
        if self.histogram_bins < 1:
            raise InputError("config", "feature_pages.histogram_bins", f"{self.histogram_bins} < 1",
                             "use at least one bin")
        if self.neuronpedia_url is not None:
            _check_link_template(self.neuronpedia_url)


@dataclass(frozen=True)
class LogitLens:
    """What a feature's decoder direction does to the next-token logits (W_U @ W_dec[i])."""

    # Most promoted tokens with their logit contributions, largest first.
    top: Sequence[tuple[str, float]]
    # Most suppressed tokens, most negative first.
    bottom: Sequence[tuple[str, float]] = ()
    # Name of the token class the top tokens are enriched in (e.g. "Spanish words"); None = none.
    token_class: str | None = None


@dataclass(frozen=True)
class McsMatch:
    """How close this feature's decoder vector comes to another dictionary's."""

    # Name of the other dictionary (another SAE, a layer, a random baseline).
    dictionary: str
    # Max cosine similarity to any of its decoder vectors.
    value: float
    # Feature id in the other dictionary that attains it, when known.
    match: int | None = None
    # The same statistic against a random dictionary of its size, to read `value` against.
    baseline: float | None = None


@dataclass(frozen=True)
class CausalCheck:
    """What removing and adding the feature does (polyglot_sae.causal), per language."""

    # both / one:{L} / neither / untested
    verdict: str
    # why it was tested, e.g. "paired:top20,paired:concept"
    source: str
    # lang -> (mean loss increase when ablated, its 95% interval low, high, sentences), nats
    effects: Mapping[str, tuple[float, float, float, int]]
    # lang -> the controls' 95th percentile of KL (drawn beside the effect)
    bars: Mapping[str, float]
    # (context language, words language) -> change of the words' log-probability when added
    steering: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # lang -> (KL(clean || ablated) per position, its 95% interval low, high): the verdict's
    # statistic
    kl: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    # lang -> Benjamini-Hochberg q-value against the controls
    q: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DictionaryAblation:
    """The feature removed where it first fires on a few held-out sentences per language (the
    causal check's whole-dictionary pass, polyglot_sae.causal.dictionary)."""

    # lang -> (KL(clean || ablated) per position, the observed token's loss increase, the
    # residual of log KL after its fit on firing rate and magnitude, sentences); None where the
    # feature does not fire in that language's pool
    effects: Mapping[str, tuple[float | None, float | None, float | None, int]]


@dataclass(frozen=True)
class AlignedExample:
    """One co-fired link: the two verses split around the linked words, with the feature's
    activation on each word (the word's max over its tokens)."""

    pair_id: int
    ref: str | None
    # (lang, text before the word, the word, text after it, activation on the word), per side
    sides: Sequence[tuple[str, str, str, str, float]]


@dataclass(frozen=True)
class WordEvidence:
    """The paired method's word-level statistics of a feature (polyglot_sae.paired.word_level)
    and its strongest co-fired aligned word pairs."""

    # r_word, r_word_lo, align_lift, lex_word, n_cofire_word, n_links (None when undefined)
    numbers: Mapping[str, Any]
    examples: Sequence[AlignedExample]


@dataclass(frozen=True)
class FeaturePagesInput:
    """Everything the pages are built from; optional parts are None and their sections omitted."""

    # The scores table: feature_id, dead, rank[, p_value, q_value] and the method's statistics,
    # jsd, idaf, beta, bi_score for the BI methods or class, rho, rho_lo, ... for `paired`.
    scores: pl.DataFrame
    # Sparse per-token activations of the scored pairs (pair_id, lang, token_pos, feature_id,
    # value); a LazyFrame over the shards keeps only the shown features' rows in memory.
    acts: Frame
    # Token tables of the same pairs (pair_id, lang, token_pos, token_str; BOS at position 0).
    tokens: Frame
    # Languages in column order; the first is the left column.
    langs: Sequence[str]
    # pair_id -> ref (e.g. "Genesis 1:1"), shown beside each example; None = pair ids only.
    refs: pl.DataFrame | None = None
    # feature_id -> logit-lens summary; features without an entry get no such section.
    logit_lens: Mapping[int, LogitLens] | None = None
    # feature_id -> MCS against other dictionaries; features without an entry get no section.
    mcs: Mapping[int, Sequence[McsMatch]] | None = None
    # feature_id -> the causal check; features without an entry get no such section.
    causal: Mapping[int, CausalCheck] | None = None
    # feature_id -> its whole-dictionary ablation; features without an entry get no section.
    ablation: Mapping[int, DictionaryAblation] | None = None
    # feature_id -> word-level evidence (paired method); without an entry, no such section.
    words: Mapping[int, WordEvidence] | None = None
    # What was scored (run, SAE, method), shown under every heading.
    name: str = ""

    @classmethod
    def from_files(cls, scores: str | Path, act_shards: Sequence[str | Path],
                   token_shards: Sequence[str | Path], langs: Sequence[str], *,
                   refs: str | Path | None = None, **optional: Any) -> FeaturePagesInput:
        """The pipeline's files: scores and refs are read, the shards scanned lazily."""
        return cls(scores=pl.read_parquet(scores),
                   acts=pl.scan_parquet([str(s) for s in act_shards]),
                   tokens=pl.scan_parquet([str(s) for s in token_shards]),
                   langs=list(langs), refs=None if refs is None else pl.read_parquet(refs),
                   **optional)


@dataclass(frozen=True)
class LangStats:
    """One feature in one language, over all scored pairs."""

    n_pairs: int  # scored pairs with a sentence in this language
    pairs_firing: int
    n_tokens: int  # non-BOS tokens of those sentences
    tokens_firing: int
    max_value: float  # 0 when it never fires
    histogram: Int64[np.ndarray, " bins"]  # firing tokens by value, bins over [0, feature max]


@dataclass(frozen=True)
class Example:
    """One pair shown on a feature page, every language's sentence with per-token values."""

    pair_id: int
    ref: str | None
    # lang -> tokens as (display text, activation); missing languages have no sentence.
    tokens: Mapping[str, Sequence[tuple[str, float]]]
    # lang -> the feature's max activation on that sentence (0 when silent).
    max_value: Mapping[str, float]


@dataclass(frozen=True)
class FeatureData:
    """What one feature page and its index row show."""

    feature_id: int
    # The feature's row of the scores table (None for nulls and NaNs).
    score: Mapping[str, Any]
    max_value: float  # over all languages: the colour scale of its examples
    stats: Mapping[str, LangStats]
    # lang -> the top pairs by that language's max activation, best first.
    examples: Mapping[str, Sequence[Example]]
    # lang -> distinct tokens among its strongest activations, strongest first.
    top_tokens: Mapping[str, Sequence[str]]


def is_paired(scores: pl.DataFrame) -> bool:
    """Whether `scores` come from the paired method (a rho column) rather than a BI method."""
    return "rho" in scores.columns


def neuronpedia_template(model: str, sae: str) -> str:
    """The Neuronpedia URL template of a hosted SAE, e.g. ("gemma-2-2b", "20-gemmascope-res-16k")."""
    model, sae = quote(model, safe=""), quote(sae, safe="")
    return f"https://www.neuronpedia.org/{model}/{sae}/{{feature}}"


def select_features(scores: pl.DataFrame, config: FeaturePagesConfig) -> list[int]:
    """The page features in page order: rank < top_n, the top_significant best-ranked features
    with q < q_threshold and the listed ones, by rank (dead last)."""
    _require(scores, "scores table", ("feature_id", "rank"))
    known = set(scores["feature_id"].to_list())
    missing = sorted(set(config.features) - known)
    if missing:
        raise InputError("config", "feature_pages.features",
                         f"feature ids {missing[:10]} are not in the scores table",
                         f"list ids the SAE has (0..{max(known, default=0)})")
    wanted = (pl.col("rank") < config.top_n) | pl.col("feature_id").is_in(list(config.features))
    if config.top_significant and "q_value" in scores.columns:
        # The score's top list can be crowded with rare features the null rejects; the best
        # ranked significant ones get pages too.
        significant = (scores.filter(pl.col("q_value") < config.q_threshold).sort("rank")
                       .head(config.top_significant)["feature_id"].to_list())
        wanted = wanted | pl.col("feature_id").is_in(significant)
    chosen = scores.filter(wanted)
    return chosen.sort(["rank", "feature_id"], nulls_last=True)["feature_id"].to_list()


def collect_feature_data(inputs: FeaturePagesInput,
                         config: FeaturePagesConfig = FeaturePagesConfig()) -> list[FeatureData]:
    """Scores, density, examples and top tokens of the page features, in page order."""
    langs = list(inputs.langs)
    if not langs or len(set(langs)) != len(langs):
        raise InputError("input", "langs", f"need distinct language codes, got {langs}",
                         "pass e.g. ['en', 'es']")
    _require(inputs.scores, "scores table", ("feature_id", "rank")
             + (("rho", "rho_lo") if is_paired(inputs.scores) else ("bi_score", "jsd", "idaf")))
    ids = select_features(inputs.scores, config)
    acts = _normalized(inputs.acts, "activation table",
                       ("pair_id", "lang", "token_pos", "feature_id", "value"))
    tokens = _normalized(inputs.tokens, "token table", ("pair_id", "lang", "token_pos", "token_str"))
    # BOS sits at position 0 and never has activations; it is neither shown nor counted.
    tokens = tokens.filter((pl.col("token_pos") > 0) & pl.col("lang").is_in(langs))
    sel = acts.filter(pl.col("feature_id").is_in(ids) & pl.col("lang").is_in(langs)
                      & (pl.col("value") > 0))
    keys = ["feature_id", "lang"]

    denom_q = tokens.group_by("lang").agg(n_pairs=pl.col("pair_id").n_unique(), n_tokens=pl.len())
    stats_q = sel.group_by(keys).agg(tokens_firing=pl.len(), pairs_firing=pl.col("pair_id").n_unique(),
                                     max_value=pl.col("value").max())
    best_q = (sel.group_by([*keys, "pair_id"]).agg(pl.col("value").max())
              .sort([*keys, "value", "pair_id"], descending=[False, False, True, False])
              .group_by(keys, maintain_order=True).head(config.n_examples))
    # top_k_by rather than a sort: the selected rows can be tens of millions on a real corpus.
    cand_q = (sel.group_by(keys)
              .agg(pl.col("pair_id", "token_pos", "value").top_k_by(
                  ["value", "pair_id", "token_pos"], _TOKEN_CANDIDATES, reverse=[False, True, True]))
              .explode("pair_id", "token_pos", "value"))
    denom, stats, best, cand = pl.collect_all([denom_q, stats_q, best_q, cand_q])
    absent = [lang for lang in langs if lang not in set(denom["lang"].to_list())]
    if absent:
        raise InputError("token table", "lang", f"no tokens for language(s) {absent}",
                         "pass the token shards of the scored pairs, or drop those languages")

    fmax = stats.group_by("feature_id").agg(fmax=pl.col("max_value").max())
    bins = config.histogram_bins
    hist_q = (sel.join(fmax.lazy(), on="feature_id")
              .with_columns(bin=(pl.col("value") / pl.col("fmax") * bins).floor()
                            .clip(0, bins - 1).cast(pl.Int64))
              .group_by([*keys, "bin"]).agg(n=pl.len()))
    shown = best.select("feature_id", "pair_id").unique()
    ex_acts_q = sel.join(shown.lazy(), on=["feature_id", "pair_id"]).select(
        "feature_id", "pair_id", "lang", "token_pos", "value")
    ex_tokens_q = (tokens.join(shown.select("pair_id").unique().lazy(), on="pair_id")
                   .sort("pair_id", "lang", "token_pos")
                   .group_by("pair_id", "lang", maintain_order=True)
                   .agg(pl.col("token_pos"), pl.col("token_str")))
    cand_tokens_q = cand.lazy().join(tokens, on=["pair_id", "lang", "token_pos"], how="left").sort(
        [*keys, "value", "pair_id", "token_pos"], descending=[False, False, True, False, False])
    hist, ex_acts, ex_tokens, cand_tokens = pl.collect_all([hist_q, ex_acts_q, ex_tokens_q,
                                                            cand_tokens_q])

    denoms = {r["lang"]: r for r in denom.iter_rows(named=True)}
    stat_rows = {(r["feature_id"], r["lang"]): r for r in stats.iter_rows(named=True)}
    hists: dict[tuple[int, str], Int64[np.ndarray, " bins"]] = defaultdict(
        lambda: np.zeros(bins, dtype=np.int64))
    for f, lang, b, n in hist.select(*keys, "bin", "n").iter_rows():
        hists[f, lang][b] = n
    sentence = {(p, lang): [display_piece(s or "") for s in strs]
                for p, lang, _, strs in ex_tokens.iter_rows()}
    positions = {(p, lang): pos for p, lang, pos, _ in ex_tokens.iter_rows()}
    values: dict[tuple[int, int, str], dict[int, float]] = defaultdict(dict)
    for f, p, lang, pos, v in ex_acts.iter_rows():
        values[f, p, lang][pos] = v
    refs = _refs(inputs.refs)
    top_tokens: dict[tuple[int, str], list[str]] = defaultdict(list)
    for f, lang, s in cand_tokens.select(*keys, "token_str").iter_rows():
        text = display_piece(s or "").strip()
        if text and text not in top_tokens[f, lang] and len(top_tokens[f, lang]) < config.n_top_tokens:
            top_tokens[f, lang].append(text)
    examples: dict[tuple[int, str], list[int]] = defaultdict(list)
    for f, lang, p in best.select(*keys, "pair_id").iter_rows():
        examples[f, lang].append(p)

    score_rows = {r["feature_id"]: {k: _clean(v) for k, v in r.items()}
                  for r in inputs.scores.filter(pl.col("feature_id").is_in(ids)).iter_rows(named=True)}
    fmaxes = dict(fmax.iter_rows())

    def example(f: int, p: int) -> Example:
        toks = {lang: [(t, values[f, p, lang].get(pos, 0.0))
                       for t, pos in zip(sentence[p, lang], positions[p, lang])]
                for lang in langs if (p, lang) in sentence}
        return Example(p, refs.get(p), toks,
                       {lang: max(values[f, p, lang].values(), default=0.0) for lang in langs})

    out = []
    for f in ids:
        stats_f = {}
        for lang in langs:
            row = stat_rows.get((f, lang), {})
            stats_f[lang] = LangStats(
                n_pairs=denoms[lang]["n_pairs"], pairs_firing=row.get("pairs_firing", 0),
                n_tokens=denoms[lang]["n_tokens"], tokens_firing=row.get("tokens_firing", 0),
                max_value=row.get("max_value", 0.0), histogram=hists[f, lang].copy())
        out.append(FeatureData(
            feature_id=f, score=score_rows[f], max_value=fmaxes.get(f, 0.0), stats=stats_f,
            examples={lang: [example(f, p) for p in examples[f, lang]] for lang in langs},
            top_tokens={lang: top_tokens[f, lang] for lang in langs}))
    return out



# ---------------------------------------------------------------------------------------------
# helpers


def _check_link_template(template: str) -> None:
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    parts = urlsplit(template.replace("{feature}", "0"))
    if fields != {"feature"} or parts.scheme != "https" or not parts.netloc:
        raise InputError("config", "feature_pages.neuronpedia_url",
                         f"{template!r} is not an https URL template with exactly one {{feature}} field",
                         "use e.g. https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/{feature}, "
                         "or null for SAEs Neuronpedia does not host")


def _require(table: pl.DataFrame | pl.LazyFrame, source: str, columns: Sequence[str]) -> None:
    have = table.collect_schema().names() if isinstance(table, pl.LazyFrame) else table.columns
    missing = [c for c in columns if c not in have]
    if missing:
        raise InputError(source, "columns", f"missing {missing} (has {have})",
                         "pass the pipeline's table of that kind (see DESIGN.md section 3)")


def _normalized(table: Frame, source: str, columns: Sequence[str]) -> pl.LazyFrame:
    """The columns with one dtype each, so joins between tables written by different code agree."""
    _require(table, source, columns)
    dtypes = {"pair_id": pl.Int64, "lang": pl.String, "token_pos": pl.Int64, "feature_id": pl.Int64,
              "value": pl.Float64, "token_str": pl.String}
    return table.lazy().select(pl.col(c).cast(dtypes[c]) for c in columns)


def _refs(refs: pl.DataFrame | None) -> dict[int, str]:
    if refs is None:
        return {}
    _require(refs, "refs table", ("pair_id", "ref"))
    return {int(p): str(r) for p, r in refs.select("pair_id", "ref").iter_rows() if r is not None}


def _clean(value: Any) -> Any:
    """JSON- and display-ready: numpy scalars to Python, NaN and inf to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

