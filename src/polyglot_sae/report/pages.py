"""Render the feature pages and write them: a sortable, filterable index and one page per
feature, in a folder that opens from file:// with no network and no server.

    index.html            one row per feature; the rows are a JSON data block that
                          assets/pages.js renders, sorts and filters (state in the URL hash,
                          e.g. ``index.html#sort=bi&desc=1&filter=dios&sig=1``)
    features/{id}.html    scores, activation density per language with a histogram, the top
                          pairs per language with every language's sentence side by side and
                          each token shaded by its activation, logit lens and MCS when given
    assets/pages.css, assets/pages.js   shared by every page

The HTML is in the Jinja templates under templates/ (base.html.j2 is the frame; index.html.j2
and feature.html.j2 fill its body), the CSS and JS under assets/, all package data. This
module gathers the data (``page_data.collect_feature_data``), turns it into what the templates
show (columns per score family, histogram bars, shaded token runs) and renders them.

Safety. Tokens, sentences, refs and names come from corpora and tokenizers and are treated as
hostile: the environment autoescapes every ``{{ }}`` (entities spelled as ``html.escape`` with
quotes writes them), the JSON block escapes ``<``, ``>`` and ``&`` as \\u003c etc.
(``script_json``, so a token ``</script>`` cannot close it) and is the one ``|safe`` value, and
the script builds the table with ``textContent`` only. A Content-Security-Policy meta allows local
CSS and JS files only (no inline script, no remote fetch, images or fonts); the only absolute URL
on any page is the optional Neuronpedia link, which is a link, not a load.

The folder is built in a temporary sibling and swapped in (``atomic_io.write_dir``), so a job
killed half way leaves no partial folder under the final name.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from jaxtyping import Int64
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..atomic_io import write_dir
from polyglot_sae.report.examples import display_piece
from .page_data import (FeatureData, FeaturePagesConfig, FeaturePagesInput, collect_feature_data,
                        is_paired)

CSS_PATH, JS_PATH = "assets/pages.css", "assets/pages.js"
EXPLORER_JS_PATH = "assets/explorer.js"  # only in a folder with the browser (report/explorer)
# Only the folder's own CSS and JS load. 'self' covers them over http(s) and, in Chromium, from
# file://; browsers that give file: documents an opaque origin (Firefox) match them only by the
# file: scheme, which is local by definition. Token shading is a style attribute per token, hence
# style-src-attr; <style> and inline <script> elements stay forbidden.
CSP = ("default-src 'none'; script-src 'self' file:; style-src 'self' file:; "
       "style-src-attr 'unsafe-inline'; base-uri 'none'; form-action 'none'")

# The method's statistics in the index: (index key, column, label, tooltip), BI or paired.
# The keys are also the JSON fields and the order of data.stats, which pages.js renders.
_BI_COLUMNS = (
    ("bi", "bi_score", "bi_score", "bilingual score: JSD + beta * idaf, lower = more bilingual"),
    ("jsd", "jsd", "jsd", "Jensen-Shannon divergence of the languages' distributions over pairs"),
)
_PAIRED_COLUMNS = (
    ("class", "class", "class", "concept, shared_string, length, lang_specific:{L}, weak, "
     "low_support or dead (thresholds: config paired.classes)"),
    ("rho", "rho", "rho", "Pearson correlation of the per-pair maxima across languages, "
     "zeros included"),
    ("rho_lo", "rho_lo", "rho_lo", "bootstrap lower bound of rho (the rank key)"),
    ("ratio", "ratio", "rho/rho_para", "rho against the same statistic between two versions of "
     "one language (the paraphrase ceiling)"),
    ("lex", "lex", "lex", "share of the co-fired mass on pairs whose maxima sit on the same "
     "string (names, numbers, cognates)"),
)
# The feature page's score table after the rank: (column, label); p and q follow when present.
_BI_SCORES = (("bi_score", "BI score"), ("jsd", "JSD"), ("idaf", "idaf"), ("beta", "beta"))
_PAIRED_SCORES = (
    ("class", "class"), ("rho", "rho"), ("rho_lo", "rho lower bound"),
    ("rho_len", "rho given lengths"), ("rho_para", "rho_para (paraphrase ceiling)"),
    ("ratio", "rho / rho_para"), ("lex", "lex (shared-string share)"),
    ("rho_nonlex", "rho without shared strings"), ("n_cofire", "co-fired pairs"))


def _escape(value: Any) -> Markup:
    """Every ``{{ }}`` value as HTML text or attribute content, quotes escaped too.

    Autoescape would escape it anyway; escaping here first, with ``html.escape``, keeps the
    entities the pages have always had (&#x27; and &quot; rather than markupsafe's &#39; and
    &#34;). Markup (the JSON block, macro output) is HTML already and passes unchanged.
    Filters that build Markup themselves (join) would escape with markupsafe's spelling, so the
    templates loop instead of joining."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


_ENV = Environment(loader=PackageLoader(__package__, "templates"), autoescape=True,
                   finalize=_escape, undefined=StrictUndefined, keep_trailing_newline=True)


def build_feature_pages(inputs: FeaturePagesInput, out_dir: str | Path,
                        config: FeaturePagesConfig = FeaturePagesConfig(), *,
                        extra: Mapping[str, str] | None = None) -> Path:
    """Write the folder (index.html, features/{id}.html, assets/, and the ``extra`` files by
    path in it, e.g. the all-features browser's) atomically; returns it."""
    features = collect_feature_data(inputs, config)
    assets = files(__package__) / "assets"

    def write(folder: Path) -> None:
        (folder / "features").mkdir()
        (folder / "assets").mkdir()
        for path in (CSS_PATH, JS_PATH):
            (folder / path).write_bytes((assets / Path(path).name).read_bytes())
        for name, text in (extra or {}).items():
            (folder / name).write_text(text, encoding="utf-8")
        (folder / "index.html").write_text(render_index(features, inputs, config), encoding="utf-8")
        for i, feature in enumerate(features):
            prev = features[i - 1].feature_id if i else None
            nxt = features[i + 1].feature_id if i + 1 < len(features) else None
            (folder / "features" / f"{feature.feature_id}.html").write_text(
                render_feature_page(feature, inputs, config, prev=prev, next_=nxt), encoding="utf-8")

    return write_dir(write, out_dir)


def render_template(template: str, **values: Any) -> str:
    """A template of templates/ in the pages' environment (autoescaped, the same CSP)."""
    return _ENV.get_template(template).render(**values)


def script_json(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' survive,
    so no token can close the element or open a comment."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _stat_columns(scores: pl.DataFrame) -> tuple[tuple[str, str, str, str], ...]:
    return _PAIRED_COLUMNS if is_paired(scores) else _BI_COLUMNS


def render_index(features: Sequence[FeatureData], inputs: FeaturePagesInput,
                 config: FeaturePagesConfig) -> str:
    """The index page: the table's header is static, its rows are rendered by assets/pages.js
    from the JSON block (a <noscript> list of links stands in without JavaScript).

    The block holds the languages, the q cut, ``stats`` (the keys of the method's statistic
    columns, then p and q when the scores have them, in header order) and per feature its id,
    rank, those statistics, dead, density per language (``d``) and top tokens (``t``)."""
    langs = list(inputs.langs)
    stat_columns = _stat_columns(inputs.scores)
    has_p = "p_value" in inputs.scores.columns
    has_q = "q_value" in inputs.scores.columns
    data = {
        "langs": langs,
        "q_threshold": config.q_threshold,
        "stats": [key for key, _, _, _ in stat_columns] + ["p"] * has_p + ["q"] * has_q,
        "features": [{
            "id": f.feature_id, "rank": f.score.get("rank"),
            **{key: f.score.get(col) for key, col, _, _ in stat_columns},
            "p": f.score.get("p_value"), "q": f.score.get("q_value"),
            "dead": bool(f.score.get("dead")),
            "d": [_round(_share(f.stats[lang].pairs_firing, f.stats[lang].n_pairs)) for lang in langs],
            "t": [list(f.top_tokens[lang]) for lang in langs],
        } for f in features],
    }
    columns = [("id", "feature", "feature id; links to its page"),
               ("rank", "rank", "0-based among ranked features, 0 = most bilingual")]
    columns += [(key, label, tip) for key, _, label, tip in stat_columns]
    if has_p:
        columns.append(("p", "p", "permutation p-value of the JSD"))
    if has_q:
        columns.append(("q", "q", "Benjamini-Hochberg q-value"))
    columns += [(f"d{i}", f"density {lang}", f"share of {lang} sentences on which it fires")
                for i, lang in enumerate(langs)]
    columns.append(("tok", "top tokens", "distinct tokens among its strongest activations, per language"))
    # Every feature counts over the same scored pairs, so the first one's denominators serve.
    n_pairs = [(lang, f.stats[lang].n_pairs) for f in features[:1] for lang in langs]
    return _ENV.get_template("index.html.j2").render(
        page_title=config.title, prefix="", script=True, title=config.title, name=inputs.name,
        ids=[f.feature_id for f in features], top_n=config.top_n, listed=bool(config.features),
        n_pairs=n_pairs, columns=columns, has_q=has_q, q_threshold=f"{config.q_threshold:g}",
        data_json=script_json(data))


def render_feature_page(feature: FeatureData, inputs: FeaturePagesInput, config: FeaturePagesConfig,
                        *, prev: int | None = None, next_: int | None = None) -> str:
    """One feature's page; `prev` and `next_` are the neighbouring pages' feature ids."""
    f, s = feature.feature_id, feature.score
    rank = "dead (never fires in some language)" if s.get("dead") else s.get("rank")
    shown = _PAIRED_SCORES if is_paired(inputs.scores) else _BI_SCORES
    shown += tuple((col, label) for col, label in (("p_value", "p"), ("q_value", "q"))
                   if col in inputs.scores.columns)
    scores = [("rank", rank)] + [(label, s.get(col)) for col, label in shown]
    url = config.neuronpedia_url.format(feature=f) if config.neuronpedia_url else None
    return _ENV.get_template("feature.html.j2").render(
        page_title=f"{config.title}: feature {f}", prefix="../", script=False, name=inputs.name,
        feature=feature, langs=list(inputs.langs), prev=prev, next=next_, scores=scores,
        neuronpedia_url=url, lens=(inputs.logit_lens or {}).get(f),
        mcs=(inputs.mcs or {}).get(f), causal=(inputs.causal or {}).get(f),
        ablation=(inputs.ablation or {}).get(f),
        words=(inputs.words or {}).get(f))


@dataclass(frozen=True)
class Histogram:
    """An inline SVG histogram: size, accessible label and bars, numbers already formatted."""

    width: int
    height: int
    label: str
    bars: Sequence[tuple[str, str, str, str, str]]  # x, y, width, height, tooltip


def histogram(counts: Int64[np.ndarray, " bins"], max_value: float, label: str,
              width: int = 240, height: int = 48) -> Histogram | None:
    """Bars of `counts` (equal bins over [0, max_value]) scaled to the tallest, at least 1 px
    when non-zero; each bar's tooltip gives its range and count. None when all are zero."""
    n = int(counts.sum())
    if n == 0:
        return None
    top, bar = int(counts.max()), width / len(counts)
    step = max_value / len(counts)
    bars = []
    for i, c in enumerate(counts.tolist()):
        h = 0.0 if c == 0 else max(1.0, (height - 2) * c / top)
        bars.append((f"{i * bar:.1f}", f"{height - h:.1f}", f"{max(bar - 1, 1):.1f}", f"{h:.1f}",
                     f"{label}: {c:,} tokens in [{i * step:.3g}, {(i + 1) * step:.3g})"))
    return Histogram(width, height, f"{label}: histogram of {n:,} activations, tallest bar {top:,}",
                     bars)


def shaded_runs(tokens: Sequence[tuple[str, float]] | None,
                scale: float) -> list[tuple[str, str | None, str]] | None:
    """A sentence as (text, shade, value) runs: each firing token its own run with shade
    value / scale (capped at 1) and its value for the tooltip; runs of silent tokens merged into
    one with shade None, which the template writes as plain text (keeps pages small). Outer
    whitespace of the sentence is dropped; None for a missing sentence."""
    if tokens is None:
        return None
    runs: list[tuple[str, str | None, str]] = []
    for text, value in tokens:
        if value > 0 and scale > 0:
            runs.append((text, f"{min(value / scale, 1.0):.3f}", f"{value:.4g}"))
        elif runs and runs[-1][1] is None:
            runs[-1] = (runs[-1][0] + text, None, "")
        else:
            runs.append((text, None, ""))
    # Only plain text is trimmed: a shaded token keeps its leading space inside its span.
    if runs and runs[0][1] is None:
        runs[0] = (runs[0][0].lstrip(), None, "")
    if runs and runs[-1][1] is None:
        runs[-1] = (runs[-1][0].rstrip(), None, "")
    return runs


# ---------------------------------------------------------------------------------------------
# helpers


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


_ENV.filters.update(num=_num, thousands=lambda n: f"{n:,}", piece=display_piece)
_ENV.globals.update(css_path=CSS_PATH, js_path=JS_PATH, csp=CSP, percent=_percent,
                    histogram=histogram, shaded_runs=shaded_runs)
