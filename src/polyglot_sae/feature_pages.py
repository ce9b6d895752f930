"""Static HTML pages for the ranked features: a sortable, filterable index and one page per
feature, in a folder that opens from file:// with no network and no server.

    index.html            one row per feature; the rows are a JSON data block that
                          assets/pages.js renders, sorts and filters (state in the URL hash,
                          e.g. ``index.html#sort=bi&desc=1&filter=dios&sig=1``)
    features/{id}.html    scores, activation density per language with a histogram, the top
                          pairs per language with every language's sentence side by side and
                          each token shaded by its activation, logit lens and MCS when given
    assets/pages.css, assets/pages.js   shared by every page

Which features: those with ``rank < top_n`` in rank order, then any ids the user lists (dead
ones or ones beyond top_n included) by rank, dead ones last.

Safety. Tokens, sentences, refs and names come from corpora and tokenizers and are treated as
hostile: every string put into HTML is ``html.escape``'d with quotes, the JSON block escapes
``<``, ``>`` and ``&`` as \\u003c etc. (so a token ``</script>`` cannot close it), and the script
builds the table with ``textContent`` only. A Content-Security-Policy meta allows local CSS and
JS files only (no inline script, no remote fetch, images or fonts); the only absolute URL on any
page is the optional Neuronpedia link, which is a link, not a load.

The folder is built in a temporary sibling and swapped in (``atomic_io.write_dir``), so a job
killed half way leaves no partial folder under the final name.
"""

from __future__ import annotations

import html
import json
import math
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import polars as pl
from jaxtyping import Int64

from .atomic_io import write_dir
from .errors import InputError
from .examples import display_piece

Frame = pl.DataFrame | pl.LazyFrame

CSS_PATH, JS_PATH = "assets/pages.css", "assets/pages.js"
# Only the folder's own CSS and JS load. 'self' covers them over http(s) and, in Chromium, from
# file://; browsers that give file: documents an opaque origin (Firefox) match them only by the
# file: scheme, which is local by definition. Token shading is a style attribute per token, hence
# style-src-attr; <style> and inline <script> elements stay forbidden.
CSP = ("default-src 'none'; script-src 'self' file:; style-src 'self' file:; "
       "style-src-attr 'unsafe-inline'; base-uri 'none'; form-action 'none'")
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
class FeaturePagesInput:
    """Everything the pages are built from; optional parts are None and their sections omitted."""

    # The scores table (feature_id, jsd, idaf, beta, bi_score, dead, rank[, p_value, q_value]).
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


def neuronpedia_template(model: str, sae: str) -> str:
    """The Neuronpedia URL template of a hosted SAE, e.g. ("gemma-2-2b", "20-gemmascope-res-16k")."""
    model, sae = quote(model, safe=""), quote(sae, safe="")
    return f"https://www.neuronpedia.org/{model}/{sae}/{{feature}}"


def logit_lens_from_stats(stats: pl.DataFrame, vocab: Sequence[str], features: Sequence[int],
                          k: int = 10) -> dict[int, LogitLens]:
    """Page entries from ``logit_lens``' stats table (feature_id, class, top_ids, top_values,
    bottom_ids, bottom_values) for `features`, tokens named by `vocab` (id -> piece, e.g.
    ``tokenizer.convert_ids_to_tokens(range(d_vocab))``), at most `k` per list."""
    _require(stats, "logit-lens stats", ("feature_id", "class", "top_ids", "top_values",
                                         "bottom_ids", "bottom_values"))
    rows = stats.filter(pl.col("feature_id").is_in(list(features))).with_columns(
        pl.col("class").cast(pl.String))
    out = {}
    for r in rows.iter_rows(named=True):
        top = [(vocab[i], float(v)) for i, v in zip(r["top_ids"][:k], r["top_values"][:k])]
        bottom = [(vocab[i], float(v)) for i, v in zip(r["bottom_ids"][:k], r["bottom_values"][:k])]
        out[int(r["feature_id"])] = LogitLens(top=top, bottom=bottom, token_class=r["class"])
    return out


def build_feature_pages(inputs: FeaturePagesInput, out_dir: str | Path,
                        config: FeaturePagesConfig = FeaturePagesConfig()) -> Path:
    """Write the folder (index.html, features/{id}.html, assets/) atomically; returns it."""
    features = collect_feature_data(inputs, config)

    def write(folder: Path) -> None:
        (folder / "features").mkdir()
        (folder / "assets").mkdir()
        (folder / CSS_PATH).write_text(_CSS, encoding="utf-8")
        (folder / JS_PATH).write_text(_JS, encoding="utf-8")
        (folder / "index.html").write_text(render_index(features, inputs, config), encoding="utf-8")
        for i, feature in enumerate(features):
            prev = features[i - 1].feature_id if i else None
            nxt = features[i + 1].feature_id if i + 1 < len(features) else None
            (folder / "features" / f"{feature.feature_id}.html").write_text(
                render_feature_page(feature, inputs, config, prev=prev, next_=nxt), encoding="utf-8")

    return write_dir(write, out_dir)


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
    _require(inputs.scores, "scores table", ("feature_id", "rank", "bi_score", "jsd", "idaf"))
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
# HTML


def esc(value: Any) -> str:
    """Any value as HTML text or attribute content (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def script_json(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' survive,
    so no token can close the element or open a comment."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_index(features: Sequence[FeatureData], inputs: FeaturePagesInput,
                 config: FeaturePagesConfig) -> str:
    """The index page: the table's header is static, its rows are rendered by assets/pages.js
    from the JSON block (a <noscript> list of links stands in without JavaScript)."""
    langs = list(inputs.langs)
    has_p = "p_value" in inputs.scores.columns
    has_q = "q_value" in inputs.scores.columns
    data = {
        "langs": langs,
        "q_threshold": config.q_threshold,
        "features": [{
            "id": f.feature_id, "rank": f.score.get("rank"), "bi": f.score.get("bi_score"),
            "jsd": f.score.get("jsd"), "p": f.score.get("p_value"), "q": f.score.get("q_value"),
            "dead": bool(f.score.get("dead")),
            "d": [_round(_share(f.stats[lang].pairs_firing, f.stats[lang].n_pairs)) for lang in langs],
            "t": [list(f.top_tokens[lang]) for lang in langs],
        } for f in features],
    }
    columns = [("id", "feature", "feature id; links to its page"),
               ("rank", "rank", "0-based among alive features by BI score (lower = more bilingual)"),
               ("bi", "bi_score", "bilingual score: JSD + beta * idaf, lower = more bilingual"),
               ("jsd", "jsd", "Jensen-Shannon divergence of the languages' distributions over pairs")]
    if has_p:
        columns.append(("p", "p", "permutation p-value of the JSD"))
    if has_q:
        columns.append(("q", "q", "Benjamini-Hochberg q-value"))
    columns += [(f"d{i}", f"density {lang}", f"share of {lang} sentences on which it fires")
                for i, lang in enumerate(langs)]
    columns.append(("tok", "top tokens", "distinct tokens among its strongest activations, per language"))
    head = "".join(f'<th data-key="{esc(k)}" aria-sort="none" title="{esc(tip)}">'
                   f'<button type="button">{esc(label)}</button></th>' for k, label, tip in columns)
    sig = (f'<label><input type="checkbox" id="significant"> q &lt; {esc(f"{config.q_threshold:g}")} '
           'only</label>' if has_q else "")
    links = " ".join(f'<a href="features/{f.feature_id}.html">{f.feature_id}</a>' for f in features)
    n_pairs = ", ".join(f"{esc(lang)} {f.stats[lang].n_pairs:,}" for f in features[:1] for lang in langs)
    body = f"""<header><h1>{esc(config.title)}</h1>{_subtitle(inputs)}
<p class="note">{len(features):,} features: rank &lt; {config.top_n}{
        ' plus the listed ones' if config.features else ''}. Scored pairs: {n_pairs or '–'}.
Click a header to sort, click again to reverse.</p></header>
<div class="controls"><input type="search" id="filter" placeholder="filter: feature id or token"
 aria-label="filter">{sig}<span id="status" role="status"></span></div>
<table id="features" class="index"><thead><tr>{head}</tr></thead><tbody id="rows"></tbody></table>
<noscript><p>The table needs JavaScript. Feature pages: {links}</p></noscript>
<script type="application/json" id="feature-data">{script_json(data)}</script>"""
    return _page(config.title, body, prefix="", script=True)


def render_feature_page(feature: FeatureData, inputs: FeaturePagesInput, config: FeaturePagesConfig,
                        *, prev: int | None = None, next_: int | None = None) -> str:
    """One feature's page; `prev` and `next_` are the neighbouring pages' feature ids."""
    f, s = feature.feature_id, feature.score
    nav = ['<a href="../index.html">index</a>']
    if prev is not None:
        nav.append(f'<a href="{prev}.html" rel="prev">&larr; feature {prev}</a>')
    if next_ is not None:
        nav.append(f'<a href="{next_}.html" rel="next">feature {next_} &rarr;</a>')
    rank = "dead (never fires in some language)" if s.get("dead") else s.get("rank")
    stats = [("rank", rank), ("BI score", s.get("bi_score")), ("JSD", s.get("jsd")),
             ("idaf", s.get("idaf")), ("beta", s.get("beta"))]
    stats += [(label, s.get(col)) for col, label in (("p_value", "p"), ("q_value", "q"))
              if col in inputs.scores.columns]
    stat_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_num(v))}</td></tr>" for k, v in stats)
    link = ""
    if config.neuronpedia_url:
        url = config.neuronpedia_url.format(feature=f)
        link = (f'<p><a class="external" href="{esc(url)}" rel="noopener noreferrer external" '
                f'target="_blank">Neuronpedia page of feature {f}</a></p>')
    parts = [f"""<nav>{' | '.join(nav)}</nav>
<header><h1>Feature {f}</h1>{_subtitle(inputs)}</header>
<section id="scores"><h2>Scores</h2><table class="stats">{stat_rows}</table>{link}</section>""",
             _density_section(feature, inputs.langs)]
    if inputs.logit_lens and f in inputs.logit_lens:
        parts.append(_logit_lens_section(inputs.logit_lens[f]))
    if inputs.mcs and inputs.mcs.get(f):
        parts.append(_mcs_section(inputs.mcs[f]))
    parts.append(_examples_section(feature, inputs.langs))
    return _page(f"{config.title}: feature {f}", "\n".join(parts), prefix="../", script=False)


def _page(title: str, body: str, *, prefix: str, script: bool) -> str:
    js = f'\n<script src="{prefix}{JS_PATH}" defer></script>' if script else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<link rel="stylesheet" href="{prefix}{CSS_PATH}">{js}
</head><body>
{body}
</body></html>
"""


def _subtitle(inputs: FeaturePagesInput) -> str:
    return f'<p class="subtitle">{esc(inputs.name)}</p>' if inputs.name else ""


def _density_section(feature: FeatureData, langs: Sequence[str]) -> str:
    rows = []
    for lang in langs:
        st = feature.stats[lang]
        rows.append(
            f"<tr><th>{esc(lang)}</th>"
            f"<td>{st.pairs_firing:,} / {st.n_pairs:,} ({_percent(st.pairs_firing, st.n_pairs)})</td>"
            f"<td>{st.tokens_firing:,} / {st.n_tokens:,} ({_percent(st.tokens_firing, st.n_tokens)})</td>"
            f"<td>{esc(_num(st.max_value))}</td>"
            f"<td>{svg_histogram(st.histogram, feature.max_value, lang)}</td></tr>")
    return f"""<section id="density"><h2>Activation density</h2>
<table class="density"><thead><tr><th>language</th><th>sentences firing</th><th>tokens firing</th>
<th>max</th><th>firing tokens by activation (0 to the feature's max, {esc(_num(feature.max_value))})</th>
</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"""


def svg_histogram(counts: Int64[np.ndarray, " bins"], max_value: float, label: str,
                  width: int = 240, height: int = 48) -> str:
    """Bars of `counts` (equal bins over [0, max_value]) as inline SVG; each bar's tooltip
    gives its range and count."""
    n = int(counts.sum())
    if n == 0:
        return '<span class="muted">never fires</span>'
    top, bar = int(counts.max()), width / len(counts)
    step = max_value / len(counts)
    rects = []
    for i, c in enumerate(counts.tolist()):
        h = 0.0 if c == 0 else max(1.0, (height - 2) * c / top)
        tip = f"{label}: {c:,} tokens in [{i * step:.3g}, {(i + 1) * step:.3g})"
        rects.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                     f'height="{h:.1f}"><title>{esc(tip)}</title></rect>')
    return (f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{esc(f"{label}: histogram of {n:,} activations, tallest bar {top:,}")}">'
            f'{"".join(rects)}</svg>')


def _logit_lens_section(lens: LogitLens) -> str:
    def items(pairs: Sequence[tuple[str, float]]) -> str:
        return "".join(f'<li><span class="tok">{esc(display_piece(t))}</span> '
                       f'<span class="num">{esc(_num(v))}</span></li>' for t, v in pairs)

    cls = (f"<p>Token class: <strong>{esc(lens.token_class)}</strong></p>"
           if lens.token_class else "")
    bottom = f"<div><h3>Most suppressed</h3><ol>{items(lens.bottom)}</ol></div>" if lens.bottom else ""
    return f"""<section id="logit-lens"><h2>Logit lens</h2>{cls}
<div class="cols"><div><h3>Most promoted</h3><ol>{items(lens.top)}</ol></div>{bottom}</div></section>"""


def _mcs_section(matches: Sequence[McsMatch]) -> str:
    rows = "".join(f"<tr><td>{esc(m.dictionary)}</td><td>{esc(_num(m.value))}</td>"
                   f"<td>{esc('–' if m.match is None else m.match)}</td>"
                   f"<td>{esc(_num(m.baseline))}</td></tr>"
                   for m in matches)
    return f"""<section id="mcs"><h2>Max cosine similarity to other dictionaries</h2>
<table class="mcs"><thead><tr><th>dictionary</th><th>MCS</th><th>best match</th>
<th>random baseline</th></tr></thead><tbody>{rows}</tbody></table></section>"""


def _examples_section(feature: FeatureData, langs: Sequence[str]) -> str:
    scale = feature.max_value
    parts = ['<section id="examples"><h2>Top activating pairs</h2>'
             f'<p class="note">Token shading: activation / the feature\'s max over all languages '
             f'({esc(_num(scale))}); hover a token for its value.</p>']
    for lang in langs:
        examples = feature.examples[lang]
        parts.append(f'<h3 id="top-{esc(lang)}">Top pairs by {esc(lang)} activation</h3>')
        if not examples:
            parts.append(f'<p class="muted">Never fires in {esc(lang)}.</p>')
            continue
        head = "".join(f"<th>{esc(other)}</th>" for other in langs)
        rows = []
        for ex in examples:
            ref = esc(ex.ref) if ex.ref is not None else f"pair {ex.pair_id}"
            cells = "".join(
                f'<td lang="{esc(other)}"><div class="max">max {esc(_num(ex.max_value[other]))}</div>'
                f'<div class="sentence">{_sentence(ex.tokens.get(other), scale)}</div></td>'
                for other in langs)
            rows.append(f'<tr><th class="ref">{ref}</th>{cells}</tr>')
        parts.append(f'<table class="examples"><thead><tr><th>pair</th>{head}</tr></thead>'
                     f'<tbody>{"".join(rows)}</tbody></table>')
    parts.append("</section>")
    return "\n".join(parts)


def _sentence(tokens: Sequence[tuple[str, float]] | None, scale: float) -> str:
    """Tokens as text, each firing one in a span shaded by value / scale with the value on hover;
    runs of silent tokens stay plain text, which keeps pages small."""
    if tokens is None:
        return '<span class="muted">(no sentence)</span>'
    out = []
    for text, value in tokens:
        if value > 0 and scale > 0:
            out.append(f'<span class="a" style="--a:{min(value / scale, 1.0):.3f}" '
                       f'title="{esc(f"{value:.4g}")}">{esc(text)}</span>')
        else:
            out.append(esc(text))
    return "".join(out).strip()


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


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool | int | str):
        return str(value)
    return f"{value:.4g}"


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _round(x: float | None) -> float | None:
    """Six significant digits: enough to sort and show, a third of repr's bytes in the JSON."""
    return None if x is None else float(f"{x:.6g}")


def _percent(k: int, n: int) -> str:
    return "–" if not n else f"{100 * k / n:.3g}%"


_CSS = """\
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; }
h1 { margin: .2em 0; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.subtitle, .note, .muted { color: #666; }
table { border-collapse: collapse; }
th, td { padding: .25em .6em; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
table.index td.num, table.stats td { font-variant-numeric: tabular-nums; }
table.index { width: 100%; }
table.index th button { font: inherit; font-weight: bold; background: none; border: 0; padding: 0;
                        cursor: pointer; color: inherit; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
table.index tbody tr:hover { background: #f6f6fa; }
.controls { display: flex; gap: 1.2em; align-items: center; margin: .8em 0; }
.controls input[type=search] { width: 22em; padding: .3em; }
table.examples { width: 100%; table-layout: fixed; }
table.examples th.ref { width: 8em; font-weight: normal; color: #666; }
.sentence { white-space: pre-wrap; overflow-wrap: anywhere; }
.max { font-size: 85%; color: #666; }
span.a { background: rgb(255 120 0 / var(--a)); border-radius: 2px; }
svg.hist rect { fill: #4a6fa5; }
.cols { display: flex; gap: 3em; }
span.tl { margin-right: 1.2em; } span.tl b { color: #666; font-weight: normal; }
.tok { font-family: ui-monospace, monospace; background: #f3f3f3; padding: 0 .2em; white-space: pre; }
nav { margin-bottom: .5em; }
"""

# Shared by every page; only the index has the data block it works on. Built with
# createElement/textContent only: the data are never parsed as HTML.
_JS = """\
"use strict";
(function () {
  const block = document.getElementById("feature-data");
  if (!block) return;
  const data = JSON.parse(block.textContent);
  const rows = document.getElementById("rows");
  const filter = document.getElementById("filter");
  const significant = document.getElementById("significant");
  const status = document.getElementById("status");
  const headers = Array.from(document.querySelectorAll("th[data-key]"));
  const keys = new Set(headers.map((th) => th.dataset.key));
  const state = { sort: "rank", desc: false };

  const fmt = (x) => {
    if (x === null || x === undefined) return "\\u2013";
    if (Number.isInteger(x)) return String(x);
    return x !== 0 && Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toPrecision(4);
  };
  const pct = (x) => (x === null ? "\\u2013" : (100 * x).toPrecision(3) + "%");
  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    tr.appendChild(td);
  };
  const tokenCell = (f) => {
    const frag = document.createDocumentFragment();
    data.langs.forEach((lang, i) => {
      const span = frag.appendChild(document.createElement("span"));
      span.className = "tl";
      span.appendChild(document.createElement("b")).textContent = lang;
      span.appendChild(document.createTextNode(" " + f.t[i].join(" \\u00b7 ")));
    });
    return frag;
  };

  for (const f of data.features) {
    const tr = document.createElement("tr");
    const a = document.createElement("a");
    a.href = "features/" + encodeURIComponent(String(f.id)) + ".html";
    a.textContent = String(f.id);
    cell(tr, a);
    cell(tr, f.dead ? "dead" : fmt(f.rank), "num");
    for (const k of ["bi", "jsd", "p", "q"]) if (keys.has(k)) cell(tr, fmt(f[k]), "num");
    f.d.forEach((x) => cell(tr, pct(x), "num"));
    cell(tr, tokenCell(f));
    f.row = tr;
    f.tok = f.t.flat().join(" ").toLowerCase();
    f.text = String(f.id) + " " + f.tok;
  }

  const value = (f, key) => (key === "tok" ? f.tok : /^d[0-9]+$/.test(key) ? f.d[+key.slice(1)] : f[key]);
  const compare = (a, b) => {
    const x = value(a, state.sort), y = value(b, state.sort);
    if (x === null || x === undefined) return y === null || y === undefined ? a.id - b.id : 1;
    if (y === null || y === undefined) return -1;  // missing values last either way
    const c = x < y ? -1 : x > y ? 1 : 0;
    return (state.desc ? -c : c) || a.id - b.id;
  };

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    state.sort = keys.has(h.get("sort")) ? h.get("sort") : "rank";
    state.desc = h.get("desc") === "1";
    filter.value = h.get("filter") || "";
    if (significant) significant.checked = h.get("sig") === "1";
  }
  function writeHash() {
    const h = new URLSearchParams();
    if (state.sort !== "rank" || state.desc) h.set("sort", state.sort);
    if (state.desc) h.set("desc", "1");
    if (filter.value) h.set("filter", filter.value);
    if (significant && significant.checked) h.set("sig", "1");
    try { history.replaceState(null, "", "#" + h.toString()); } catch (e) { /* file:// quirks */ }
  }
  function render() {
    const needle = filter.value.trim().toLowerCase();
    const onlySig = significant && significant.checked;
    const sorted = data.features.slice().sort(compare);
    const frag = document.createDocumentFragment();
    let shown = 0;
    for (const f of sorted) {
      const hide = (needle && !f.text.includes(needle))
        || (onlySig && !(f.q !== null && f.q < data.q_threshold));
      f.row.hidden = Boolean(hide);
      if (!hide) shown += 1;
      frag.appendChild(f.row);
    }
    rows.replaceChildren(frag);
    status.textContent = shown + " of " + sorted.length + " features";
    for (const th of headers) {
      const sort = th.dataset.key !== state.sort ? "none" : state.desc ? "descending" : "ascending";
      th.setAttribute("aria-sort", sort);
    }
  }

  for (const th of headers) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      state.desc = key === state.sort ? !state.desc : false;
      state.sort = key;
      writeHash();
      render();
    });
  }
  filter.addEventListener("input", () => { writeHash(); render(); });
  if (significant) significant.addEventListener("change", () => { writeHash(); render(); });
  window.addEventListener("hashchange", () => { readHash(); render(); });
  readHash();
  render();
  // Time from navigation start to a rendered table, for load-time checks.
  document.documentElement.dataset.readyMs = performance.now().toFixed(1);
})();
"""
