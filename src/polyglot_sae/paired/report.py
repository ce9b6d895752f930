"""What the run summary says of the paired method: the class headline, the top features with
their words, the paraphrase alignment and the translation-lexicon check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from .words import words_by_feature

# Classes a feature with enough co-fired pairs can get (the "supported" ones).
SUPPORTED = ("concept", "context", "shared_string", "length", "weak")


def class_counts(scores: pl.DataFrame) -> dict[str, int]:
    """Features per class."""
    return {c: n for c, n in scores.group_by("class").len().iter_rows()}


def headline(scores: pl.DataFrame, langs: Sequence[str]) -> str:
    """"K concept-bilingual features of M supported; S shared-string; E en-specific, ..."."""
    counts = class_counts(scores)
    supported = sum(counts.get(c, 0) for c in SUPPORTED)
    specific = ", ".join(f"{counts.get(f'lang_specific:{lang}', 0)} {lang}-specific"
                         for lang in langs)
    word = "r_word" in scores.columns
    concept = (f"**{counts.get('concept', 0)} concept-bilingual features with word-level "
               f"evidence of {supported} supported**; {counts.get('context', 0)} context (verses "
               "agree, aligned words do not)" if word else
               f"**{counts.get('concept', 0)} concept-bilingual features of {supported} "
               "supported**")
    return (f"{concept}; {counts.get('shared_string', 0)} shared-string; {counts.get('length', 0)} "
            f"length-driven; {specific}; {counts.get('low_support', 0)} with too few co-fired "
            f"pairs; {counts.get('dead', 0)} dead (method paired).")


def top_table(scores: pl.DataFrame, words: pl.DataFrame, langs: Sequence[str],
              k: int) -> list[str]:
    """The top ``k`` features of the paired ranking with their words per language."""
    by_feature = words_by_feature(words, langs)
    top = scores.filter(pl.col("rank") < k).sort("rank")
    word = "r_word" in scores.columns
    lines = ["| rank | feature | class | rho | rho_lo | rho/rho_para | lex | co-fired | "
             + ("r_word | r_word_lo | align_lift | " if word else "")
             + " | ".join(f"{lang} words" for lang in langs) + " |",
             "|---:|---:|---|---:|---:|---:|---:|---:|" + ("---:|" * 3 if word else "")
             + "---|" * len(langs)]
    for r in top.iter_rows(named=True):
        w = by_feature.get(r["feature_id"], {})
        cells = [" · ".join(w.get(lang, [])).replace("|", "\\|") for lang in langs]
        words_cells = (f"{_f(r['r_word'])} | {_f(r['r_word_lo'])} | "
                       f"{_f(r['align_lift'], '.2f')} | " if word else "")
        lines.append(f"| {r['rank']} | {r['feature_id']} | {r['class']} | {_f(r['rho'])} | "
                     f"{_f(r['rho_lo'])} | {_f(r['ratio'], '.2f')} | {_f(r['lex'], '.2f')} | "
                     f"{r['n_cofire']} | {words_cells}" + " | ".join(cells) + " |")
    return lines


def paraphrase_line(stats: dict[str, Any]) -> str:
    return (f"Paraphrase ceiling: {stats['origin']} as `{stats['label']}`, aligned by reference: "
            f"{stats['matched']:,} corpus pairs matched, {stats['missing_in_paraphrase']:,} "
            f"missing and {stats['empty_in_paraphrase']:,} empty in it (dropped); "
            f"{stats['paraphrase_only']:,} of its verses have no corpus pair.")


def lexicon_lines(table: pl.DataFrame) -> list[str]:
    """The translation-lexicon check as a Markdown table, with the language pairs it skipped."""
    done = table.filter(pl.col("precision").is_not_null())
    lines = [f"Translation-lexicon check {note}." for note in
             table.filter(pl.col("note").is_not_null())["note"].to_list()]
    if done.height == 0:
        return lines or ["Translation-lexicon check: nothing to check."]
    lines += ["Translation-lexicon check (FreeDict; identical strings do not count): share of "
              "each method's top-k features whose top words per language translate each other, "
              "against the base rate over all supported features:", "",
              "| languages | method | k | precision | features | base rate |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['langs']} | {r['method']} | {r['k']} | {_f(r['precision'], '.2f')} | "
              f"{r['n']} | {_f(r['base_rate'], '.3f')} |" for r in done.iter_rows(named=True)]
    return lines


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "–" if value is None else format(value, fmt)
