"""The all-features browser of one SAE: ``results/{run}/pages/{sae}/explorer.html``.

Every alive feature in one table (``table.feature_table``: every stage's columns), filtered by
class, by a word in any language (its top words), by numeric ranges, sorted by any column, with
a scatter of two numeric columns (verse-level ``rho`` against word-level ``r_word`` by default)
where dragging a box filters the table. The folder is a feature-pages folder
(``pages.build_feature_pages``): every alive feature gets its page when the SAE has at most
``max_pages`` latents, else the ``per_class`` best-ranked features of each class (the rest
through the Python API). Offline from file://, no library: ``assets/explorer.js`` draws the
table (only the rows in view, so 65k features stay smooth) and the scatter on a canvas, from
``explorer.data.js``, one compact columnar file beside the page. State lives in the URL hash
(``explorer.html#class=concept&q=dios&min.rho=0.3&sort=r_word&desc=1``), so a view can be
bookmarked. Escaping as on the pages: the data is JSON, the script writes it with textContent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import polars as pl

from .page_data import FeaturePagesConfig, FeaturePagesInput
from .pages import CSS_PATH, EXPLORER_JS_PATH, build_feature_pages, render_template
from .table import feature_table

# (column, label, tooltip) of the numeric columns offered, when the run has them
NUMERIC = (
    ("rank", "rank", "paired ranking (concept first, then by min(rho_lo, r_word_lo))"),
    ("rho", "rho", "verse level: correlation of the per-verse maxima across languages"),
    ("rho_lo", "rho_lo", "bootstrap lower bound of rho"),
    ("rho_para", "rho_para", "the same between two versions of one language (ceiling)"),
    ("r_word", "r_word", "word level: correlation over aligned word pairs"),
    ("r_word_lo", "r_word_lo", "bootstrap lower bound of r_word"),
    ("align_lift", "align_lift", "fires on the aligned word more than on the verse's others"),
    ("lex_word", "lex_word", "co-fired aligned words spelt alike"),
    ("n_cofire", "co-fired", "verses where both languages fire"),
    ("exact_rank", "exact rank", "rank by the blog text's BI score"),
    ("seed_rank", "seed rank", "rank by the blog code's BI score"),
)


def _per_language(langs: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """The whole-dictionary ablation's columns, per language."""
    return tuple(item for lang in langs for item in (
        (f"ablation_kl_{lang}", f"KL {lang}", f"removed on held-out {lang} sentences: KL of the "
         "next-token distribution, nats per position"),
        (f"ablation_residual_{lang}", f"used {lang}", f"log KL ({lang}) minus what firing rate "
         "and magnitude predict: above 0, used more than its size suggests")))


# (column, label) of the categorical columns shown
LABELS = (("causal_verdict", "causal"), ("logit_lens_class", "logit lens"),
          ("lexicon_translated", "translated"))


@dataclass(frozen=True)
class ExplorerConfig:
    """Which features get pages (config section ``pages``)."""

    # SAEs up to this many latents get a page for every alive feature
    max_pages: int = 4096
    # beyond it, the best-ranked features of each class get pages
    per_class: int = 100


def page_features(table: pl.DataFrame, config: ExplorerConfig) -> list[int]:
    """The features that get pages: every alive one, or the best of each class."""
    alive = table.filter(~pl.col("dead"))
    if table.height <= config.max_pages:
        return alive["feature_id"].to_list()
    best = (alive.sort("rank", nulls_last=True).group_by("class", maintain_order=True)
            .head(config.per_class))
    return best["feature_id"].to_list()


def explorer_data(table: pl.DataFrame, words: pl.DataFrame, langs: Sequence[str],
                  paged: set[int]) -> dict[str, Any]:
    """The browser's data, columnar: ids, class codes, numeric columns (null as None), labels,
    top words per language, and whether a feature has a page."""
    alive = table.filter(~pl.col("dead")).sort("feature_id")
    ids = alive["feature_id"].to_list()
    classes = sorted(set(alive["class"].to_list()))
    code = {c: i for i, c in enumerate(classes)}
    top = (words.sort("feature_id", "lang", "word_rank")
           .group_by("feature_id", "lang", maintain_order=True).agg(pl.col("word").head(3)))
    by = {(int(f), str(lang)): " · ".join(w) for f, lang, w in top.iter_rows()}
    numeric = [(c, label, tip) for c, label, tip in NUMERIC + _per_language(langs)
               if c in alive.columns]
    return {
        "langs": list(langs), "classes": classes,
        "id": ids, "cls": [code[c] for c in alive["class"].to_list()],
        "numeric": [{"key": c, "label": label, "tip": tip,
                     "values": [_number(v) for v in alive[c].to_list()]}
                    for c, label, tip in numeric],
        "labels": [{"key": c, "label": label,
                    "values": [None if v is None else str(v) for v in alive[c].to_list()]}
                   for c, label in LABELS if c in alive.columns],
        "words": [[by.get((f, lang), "") for f in ids] for lang in langs],
        "page": [f in paged for f in ids],
    }


def build_explorer(run_dir: str | Path, sae: str, inputs: FeaturePagesInput, out_dir: str | Path,
                   pages: FeaturePagesConfig, config: ExplorerConfig = ExplorerConfig(),
                   words: pl.DataFrame | None = None) -> Path:
    """The folder: feature pages (``page_features``), their index, and the browser."""
    table = feature_table(run_dir, sae)
    ids = page_features(table, config)
    words = words if words is not None else pl.read_parquet(
        Path(run_dir) / "paired" / f"{sae}.words.parquet")
    data = explorer_data(table, words, inputs.langs, set(ids))
    return build_feature_pages(inputs, out_dir, replace(pages, top_n=0, top_significant=0,
                                                        features=tuple(ids)),
                               extra=explorer_files(data, pages.title, inputs.name, len(ids)))


def explorer_files(data: dict[str, Any], title: str, name: str, n_pages: int) -> dict[str, str]:
    """``explorer.html``, ``explorer.data.js`` (the data as one JavaScript assignment: a page
    opened from file:// may load a script but not fetch a JSON file) and its script
    ``assets/explorer.js``, by path in the folder."""
    html = render_template("explorer.html.j2", page_title=f"{title}: all features", prefix="",
                           script=False, title=title, name=name, n=len(data["id"]),
                           n_pages=n_pages, langs=data["langs"], explorer_js=EXPLORER_JS_PATH)
    js = "window.EXPLORER_DATA = " + json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                                                allow_nan=False) + ";\n"
    script = (files(__package__) / EXPLORER_JS_PATH).read_text(encoding="utf-8")
    return {"explorer.html": html, "explorer.data.js": js, EXPLORER_JS_PATH: script}


def write_explorer(data: dict[str, Any], folder: str | Path, title: str, name: str) -> Path:
    """The browser alone, without feature pages, into ``folder`` (for synthetic data: the
    bench and the tests): its files and the shared stylesheet."""
    folder = Path(folder)
    (folder / "assets").mkdir(parents=True, exist_ok=True)
    (folder / CSS_PATH).write_bytes((files(__package__) / CSS_PATH).read_bytes())
    for path, text in explorer_files(data, title, name, 0).items():
        (folder / path).write_text(text, encoding="utf-8")
    return folder / "explorer.html"


def _number(value: Any) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, 4) if isinstance(value, float) else value
