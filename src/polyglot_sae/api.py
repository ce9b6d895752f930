"""The read-only Python view of a finished run: ``open_run("results/default")``.

It reads the files a run wrote and never recomputes anything: a run without some stage (no
causal check, no logit lens) still opens, its columns are absent and ``Run.missing`` names the
stages. Everything is lazy where the tables are large (the activation shards are only scanned
for the features asked for).

    run = open_run("results/default")
    run.saes                       # ['l12-jumprelu-2k']
    table = run.features(run.saes[0])   # one row per feature, every stage's columns
    f = run.feature(run.saes[0], 1204)
    f.top_words("es"), f.examples("en", 3), f.scores["class"]
    f                              # in Jupyter: the feature page's card

Column names of ``features``: see ``polyglot_sae.report.table``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import polars as pl

from .errors import InputError
from .report.page_data import (FeatureData, FeaturePagesConfig, FeaturePagesInput,
                               collect_feature_data)
from .report.page_entries import page_extras
from .report.pages import render_feature_page
from .report.table import METHODS, STAGE_FILES, feature_table, methods_of, stage_file


def open_run(path: str | Path) -> Run:
    """A finished run's folder (``results/{run}``), read-only."""
    path = Path(path)
    if not (path / "scores").is_dir():
        raise InputError(path, "scores/", "no scores folder: not a finished run's folder",
                         "pass results/{run} of a run that reached the score stage")
    return Run(path)


@dataclass(frozen=True)
class Run:
    """A finished run: its SAEs, its per-feature tables and its features."""

    path: Path

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's validated config (``config.json``, written by the run_config rule); empty
        for a run from before it was written."""
        file = self.path / "config.json"
        return json.loads(file.read_text()) if file.exists() else {}

    @cached_property
    def saes(self) -> list[str]:
        """The SAE ids the run scored."""
        return sorted({p.name.split(".")[0] for p in (self.path / "scores").glob("*.parquet")})

    @cached_property
    def langs(self) -> list[str]:
        if self.config:
            return list(self.config["corpus"]["langs"])
        scores = self._scores(self.saes[0], "paired") if self.saes else None
        if scores is None:
            return []
        return [c.removeprefix("n_fire_") for c in scores.columns if c.startswith("n_fire_")]

    def methods(self, sae: str) -> list[str]:
        """The scoring methods with a table for this SAE."""
        return methods_of(self.path, sae)

    def missing(self, sae: str) -> list[str]:
        """The per-feature stages this run has no table of, for this SAE."""
        self._check(sae)
        gone = [m for m in METHODS if m not in self.methods(sae)]
        return gone + [s for s in STAGE_FILES if stage_file(self.path, sae, s) is None]

    def features(self, sae: str) -> pl.DataFrame:
        """One row per feature with every stage's per-feature columns
        (``polyglot_sae.report.table``)."""
        self._check(sae)
        if sae not in self._tables:  # read once: feature() and the pages look rows up in it
            self._tables[sae] = feature_table(self.path, sae)
        return self._tables[sae]

    @cached_property
    def _tables(self) -> dict[str, pl.DataFrame]:
        return {}

    def feature(self, sae: str, feature_id: int) -> Feature:
        self._check(sae)
        scores = self.features(sae).filter(pl.col("feature_id") == feature_id)
        if scores.height == 0:
            raise InputError(self.path / "scores", "feature_id", f"no feature {feature_id} "
                             f"in SAE {sae!r}", "pass an id below the SAE's width")
        return Feature(self, sae, int(feature_id), scores.row(0, named=True))

    def _check(self, sae: str) -> None:
        if sae not in self.saes:
            raise InputError(self.path / "scores", "sae", f"no SAE {sae!r} (the run has "
                             f"{self.saes})", "pass one of run.saes")

    def _scores(self, sae: str, method: str) -> pl.DataFrame:
        return pl.read_parquet(self.path / "scores" / f"{sae}.{method}.parquet")

    def corpus_dir(self) -> Path:
        """``results/{corpus}``: named by the config, else the one sibling with a split."""
        if self.config:
            return self.path.parent / self.config["corpus"]["name"]
        found = [p.parent.parent for p in self.path.parent.glob("*/split/score.parquet")]
        if len(found) != 1:
            raise InputError(self.path / "config.json", "corpus.name", "no config.json and "
                             f"{len(found)} corpus folders beside the run",
                             "run the run_config rule, which writes config.json")
        return found[0]


@dataclass(frozen=True)
class Feature:
    """One feature of a run: its scores, words, examples and page card."""

    run: Run
    sae: str
    feature_id: int
    # the feature's row of ``Run.features``
    scores: dict[str, Any]

    def __repr__(self) -> str:
        shown = {k: self.scores.get(k) for k in ("class", "rank", "rho", "rho_lo", "r_word",
                                                  "align_lift", "causal_verdict")
                 if self.scores.get(k) is not None}
        return f"Feature({self.sae!r}, {self.feature_id}, {shown})"

    def top_words(self, lang: str) -> list[str]:
        """Its top words in ``lang`` (the paired method's words table: the tokens at its
        maxima, folded, by activation mass)."""
        file = self.run.path / "paired" / f"{self.sae}.words.parquet"
        if not file.exists():
            return []
        table = pl.read_parquet(file).filter((pl.col("feature_id") == self.feature_id)
                                             & (pl.col("lang") == lang))
        return table.sort("word_rank")["word"].to_list()

    def examples(self, lang: str, k: int = 3) -> list[dict[str, Any]]:
        """Its ``k`` pairs with the largest activation in ``lang``: pair id, reference, and per
        language the tokens with their activations."""
        data = self._data(k)
        return [{"pair_id": ex.pair_id, "ref": ex.ref,
                 "tokens": {lg: list(toks) for lg, toks in ex.tokens.items()},
                 "max_value": dict(ex.max_value)} for ex in data.examples.get(lang, [])]

    def _repr_html_(self) -> str:
        """The feature page's card (the pages' own template), its stylesheet inlined."""
        config = FeaturePagesConfig(top_n=0, features=(self.feature_id,))
        page = render_feature_page(self._data(config.n_examples), self._inputs, config)
        css = (files("polyglot_sae.report") / "assets" / "pages.css").read_text()
        body = page[page.find("<body>") + len("<body>"):page.rfind("</body>")]
        return f"<div class=\"polyglot-sae\"><style>{css}</style>{body}</div>"

    def _data(self, n_examples: int) -> FeatureData:
        config = FeaturePagesConfig(top_n=0, features=(self.feature_id,), n_examples=n_examples)
        (data,) = collect_feature_data(self._inputs, config)
        return data

    @cached_property
    def _inputs(self) -> FeaturePagesInput:
        """What the feature pages are built from, with the same optional sections."""
        run, sae = self.run, self.sae
        method = "paired" if "paired" in run.methods(sae) else run.methods(sae)[0]
        scores = run.path / "scores" / f"{sae}.{method}.parquet"
        shards = sorted((run.path / "acts" / sae).glob("*.parquet"))
        corpus = run.corpus_dir()
        sections = {s: stage_file(run.path, sae, s) for s in ("causal", "ablation", "logit_lens",
                                                                "mcs")}
        sections = {s: f for s, f in sections.items() if f is not None}
        examples = run.path / "paired" / f"{sae}.word_examples.parquet"
        if method == "paired" and examples.exists():
            sections |= {"word_examples": examples, "texts": corpus / "split" / "score.parquet"}
        refs = corpus / "refs.parquet"
        refs = refs if refs.exists() else None
        return FeaturePagesInput.from_files(
            scores, shards, [run.path / "tokens" / sae / s.name for s in shards], run.langs,
            refs=refs, name=f"{run.path.name}/{sae}",
            **page_extras(sections, scores, run.langs, refs))
