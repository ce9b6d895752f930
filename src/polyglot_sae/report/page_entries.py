"""Page entries from the stages' own files: the logit lens, MCS, the causal check (its tested
features and the whole dictionary) and the paired method's word level, as the optional
sections of ``FeaturePagesInput``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ..atomic_io import read_metadata
from .page_data import (AlignedExample, CausalCheck, DictionaryAblation, LogitLens, McsMatch,
                        WordEvidence, _clean, _refs, _require)


def logit_lens_entries(stats_path: str | Path, k: int = 10) -> dict[int, LogitLens]:
    """Page entries from the logit lens' stats file (feature_id, class, top_tokens, top_values,
    bottom_tokens, bottom_values): the top and bottom ``k`` tokens and the class."""
    stats = pl.read_parquet(stats_path)
    _require(stats, "logit-lens stats", ("feature_id", "class", "top_tokens", "top_values",
                                         "bottom_tokens", "bottom_values"))
    return {
        int(row["feature_id"]): LogitLens(
            top=list(zip(row["top_tokens"][:k], map(float, row["top_values"][:k]))),
            bottom=list(zip(row["bottom_tokens"][:k], map(float, row["bottom_values"][:k]))),
            token_class=str(row["class"]))
        for row in stats.iter_rows(named=True)
    }


def causal_entries(table_path: str | Path, langs: Sequence[str]) -> dict[int, CausalCheck]:
    """Page entries from the causal check's table (its tested features, not the controls)."""
    table = pl.read_parquet(table_path)
    _require(table, "causal table", ("feature_id", "verdict", "source", "is_control",
                                     *(f"effect_{lang}" for lang in langs)))
    out = {}
    for row in table.filter(~pl.col("is_control")).iter_rows(named=True):
        effects = {lang: (row[f"effect_{lang}"], row[f"effect_{lang}_lo"], row[f"effect_{lang}_hi"],
                          int(row[f"n_sentences_{lang}"] or 0)) for lang in langs}
        steering = {(c, w): row[f"steer_{c}_{w}"] for c in langs for w in langs
                    if f"steer_{c}_{w}" in table.columns}
        kl = {lang: (row[f"kl_{lang}"], row[f"kl_{lang}_lo"], row[f"kl_{lang}_hi"])
              for lang in langs if f"kl_{lang}" in table.columns}
        q = {lang: row[f"q_{lang}"] for lang in langs if f"q_{lang}" in table.columns}
        out[int(row["feature_id"])] = CausalCheck(
            verdict=row["verdict"], source=row["source"], effects=effects,
            bars={lang: row[f"control_p95_{lang}"] for lang in langs}, steering=steering,
            kl=kl, q=q)
    return out


def ablation_entries(table_path: str | Path, langs: Sequence[str],
                     ) -> dict[int, DictionaryAblation]:
    """Page entries from the causal check's whole-dictionary table: every feature measured in
    some language."""
    table = pl.read_parquet(table_path)
    cols = [f"{c}_{lang}" for lang in langs for c in ("kl", "dce", "residual", "n_dict")]
    _require(table, "causal dictionary table", ("feature_id", *cols))
    measured = table.filter(pl.any_horizontal(pl.col(f"n_dict_{lang}") > 0 for lang in langs))
    return {int(row["feature_id"]): DictionaryAblation(
        {lang: (row[f"kl_{lang}"], row[f"dce_{lang}"], row[f"residual_{lang}"],
                int(row[f"n_dict_{lang}"])) for lang in langs})
        for row in measured.iter_rows(named=True)}


_WORD_NUMBERS = ("r_word", "r_word_lo", "align_lift", "lex_word", "n_cofire_word", "n_links")


def word_entries(scores_path: str | Path, examples_path: str | Path, pairs_path: str | Path,
                 refs_path: str | Path | None = None) -> dict[int, WordEvidence]:
    """Page entries from the paired scores (word-level columns), the word-level stage's
    examples and the scored pairs' texts (the words are cut out by their spans)."""
    from polyglot_sae.align.segment import words as split_words

    scores = pl.read_parquet(scores_path)
    if "r_word" not in scores.columns:
        return {}
    examples = pl.read_parquet(examples_path)
    texts = {(int(p), str(lang)): t for p, lang, t in pl.read_parquet(pairs_path).filter(
        pl.col("pair_id").is_in(examples["pair_id"].unique().implode()))
        .select("pair_id", "lang", "text").iter_rows()}
    refs = _refs(pl.read_parquet(refs_path)) if refs_path is not None else {}
    spans: dict[tuple[int, str], Any] = {}
    by_feature: dict[int, list[AlignedExample]] = defaultdict(list)
    for row in examples.iter_rows(named=True):
        p = int(row["pair_id"])
        sides = []
        for lang, word, value in zip(row["langs"].split("-"), (row["word_a"], row["word_b"]),
                                     (row["x"], row["y"])):
            text = texts[(p, lang)]
            if (p, lang) not in spans:
                spans[(p, lang)] = split_words(text)[1]
            start, end = (int(v) for v in spans[(p, lang)][word])
            sides.append((lang, text[:start], text[start:end], text[end:], float(value)))
        by_feature[int(row["feature_id"])].append(AlignedExample(p, refs.get(p), sides))
    return {int(r["feature_id"]): WordEvidence({c: _clean(r[c]) for c in _WORD_NUMBERS},
                                               by_feature.get(int(r["feature_id"]), []))
            for r in scores.select("feature_id", *_WORD_NUMBERS).iter_rows(named=True)}


def page_extras(files: Mapping[str, Any], scores: str | Path, langs: Sequence[str],
                refs: str | Path | None = None) -> dict[str, Any]:
    """The optional page sections from the pipeline's files (keys ``mcs``, ``logit_lens``,
    ``causal``, ``ablation``, ``word_examples`` with ``texts``), as ``FeaturePagesInput``
    fields."""
    extras: dict[str, Any] = {}
    if "mcs" in files:
        extras["mcs"] = mcs_entries(files["mcs"])
    if "logit_lens" in files:
        extras["logit_lens"] = logit_lens_entries(files["logit_lens"])
    if "causal" in files:
        extras["causal"] = causal_entries(files["causal"], langs)
    if "ablation" in files:
        extras["ablation"] = ablation_entries(files["ablation"], langs)
    if "word_examples" in files:
        extras["words"] = word_entries(scores, files["word_examples"], files["texts"], refs)
    return extras


def mcs_entries(features_path: str | Path) -> dict[int, list[McsMatch]]:
    """Page entries from the MCS stage's features file: each feature against the ladder's
    widest and second widest other dictionaries (named in the file's metadata)."""
    names = read_metadata(features_path)
    out = {}
    for row in pl.read_parquet(features_path).iter_rows(named=True):
        matches = [McsMatch(dictionary=str(names.get("first")), value=row["mcs"],
                            match=row["match_id"])]
        if names.get("second") is not None:
            matches.append(McsMatch(dictionary=str(names["second"]), value=row["mcs_second"]))
        out[row["feature_id"]] = matches
    return out
