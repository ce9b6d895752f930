"""The ranked top features, each with its top activating sentences per language, tokens marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

OPEN, CLOSE = "«", "»"


def display_piece(piece: str) -> str:
    """A tokenizer piece as text: SentencePiece's ▁ and byte-level BPE's Ġ are spaces."""
    return piece.replace("▁", " ").replace("Ġ", " ").replace("Ċ", "\n")


def mark_tokens(pieces: Sequence[str], values: Sequence[float]) -> str:
    """Join the pieces, wrapping each one where the feature fired in «»."""
    out = []
    for piece, value in zip(pieces, values):
        text = display_piece(piece)
        if value > 0:
            stripped = text.lstrip(" ")
            text = text[: len(text) - len(stripped)] + OPEN + stripped + CLOSE
        out.append(text)
    return "".join(out).strip()


def window(text: str, width: int = 160) -> str:
    """At most `width` characters of `text`, centred on its first marked token."""
    if len(text) <= width:
        return text
    start = min(max(0, text.find(OPEN) - width // 3), len(text) - width)
    return ("…" if start else "") + text[start : start + width] + ("…" if start + width < len(text) else "")


# The score columns shown beside examples, by method family: (column, label, format).
_BI_STATS = (("bi_score", "BI score", ".4g"), ("jsd", "JSD", ".3g"), ("idaf", "idaf", ".4g"))
_PAIRED_STATS = (("rho", "rho", ".3f"), ("rho_lo", "rho_lo", ".3f"), ("ratio", "rho/rho_para", ".2f"),
                 ("lex", "lex", ".2f"), ("class", "class", ""))


def score_stats(columns: Sequence[str]) -> list[tuple[str, str, str]]:
    """The (column, label, format) of the statistics a scores table has, BI or paired, with the
    null's q-value when it ran."""
    family = _PAIRED_STATS if "rho" in columns else _BI_STATS
    stats = [s for s in family if s[0] in columns and s[0] != "idaf"]
    return stats + [("q_value", "q", ".3g")] * ("q_value" in columns)


def _fmt(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt) if fmt else str(value)


def top_examples(scores: pl.DataFrame, maxacts: pl.DataFrame, act_shards: Sequence[str | Path],
                 token_shards: Sequence[str | Path], refs: pl.DataFrame, *, top_k: int,
                 n_examples: int) -> pl.DataFrame:
    """One row per (top feature, language, example): rank, feature_id, the method's statistics
    (bi_score, jsd, idaf, or rho, rho_lo, ratio, lex, class; p_value, q_value when the scores
    have them), lang, n_firing (pairs on which the feature fires in that language), example
    (0-based), pair_id, ref, max_value, marked text."""
    family = _PAIRED_STATS if "rho" in scores.columns else _BI_STATS
    stats = [c for c, _, _ in family if c in scores.columns] + [
        c for c in ("p_value", "q_value") if c in scores.columns]
    top = scores.filter(pl.col("rank") < top_k).select("rank", "feature_id", *stats)
    n_firing = (maxacts.join(top.select("feature_id"), on="feature_id")
                .group_by("feature_id", "lang").agg(n_firing=pl.len().cast(pl.UInt32)))
    best = (
        maxacts.join(top.select("feature_id"), on="feature_id")
        .sort(["feature_id", "lang", "value", "pair_id"], descending=[False, False, True, False])
        .group_by("feature_id", "lang", maintain_order=True)
        .head(n_examples)
        .with_columns(example=pl.int_range(pl.len()).over("feature_id", "lang").cast(pl.UInt32))
        .rename({"value": "max_value"})
    )
    keys = best.select("pair_id", "lang").unique()
    tokens = (pl.scan_parquet([str(s) for s in token_shards])
              .join(keys.lazy(), on=["pair_id", "lang"]).collect())
    acts = (pl.scan_parquet([str(s) for s in act_shards])
            .join(best.select("feature_id", "pair_id", "lang").lazy(),
                  on=["feature_id", "pair_id", "lang"])
            .select("feature_id", "pair_id", "lang", "token_pos", "value").collect())
    per_token = (
        best.select("feature_id", "pair_id", "lang")
        .join(tokens, on=["pair_id", "lang"])
        .join(acts, on=["feature_id", "pair_id", "lang", "token_pos"], how="left")
        .with_columns(pl.col("value").fill_null(0.0))
        .filter(pl.col("token_pos") > 0)  # BOS
        .sort("feature_id", "pair_id", "lang", "token_pos")
        .group_by("feature_id", "pair_id", "lang", maintain_order=True)
        .agg(pl.col("token_str"), pl.col("value"))
    )
    marked = per_token.with_columns(
        marked=pl.struct("token_str", "value").map_elements(
            lambda r: mark_tokens(r["token_str"], r["value"]), return_dtype=pl.String)
    ).select("feature_id", "pair_id", "lang", "marked")
    return (
        top.join(best, on="feature_id")
        .join(n_firing, on=["feature_id", "lang"])
        .join(marked, on=["feature_id", "pair_id", "lang"], how="left")
        .join(refs, on="pair_id", how="left")
        .select("rank", "feature_id", *stats, "lang", "n_firing", "example", "pair_id", "ref",
                "max_value", "marked")
        .sort("rank", "lang", "example")
    )


def markdown_table(examples: pl.DataFrame, langs: Sequence[str], title: str) -> str:
    """The top features with their first example per language, as a Markdown table."""
    stats = score_stats(examples.columns)
    lines = [f"### {title}", "",
             "| rank | feature | " + "".join(f"{label} | " for _, label, _ in stats)
             + "fires on (pairs) | "
             + " | ".join(f"top {lang} example (max activation)" for lang in langs) + " |",
             "|---:|---:|" + "---:|" * len(stats) + "---|" + "---|" * len(langs)]
    first = examples.filter(pl.col("example") == 0)
    for (rank, feature), group in first.group_by("rank", "feature_id", maintain_order=True):
        row = group.row(0, named=True)
        by_lang = {r["lang"]: r for r in group.iter_rows(named=True)}
        fires = " / ".join(f"{lang} {by_lang[lang]['n_firing']}" for lang in langs if lang in by_lang)
        cells = [f"{by_lang[lang]['ref']}: {window(by_lang[lang]['marked'])} "
                 f"({by_lang[lang]['max_value']:.3g})".replace("|", "\\|")
                 if lang in by_lang else "" for lang in langs]
        values = "".join(f"{_fmt(row[c], fmt)} | " for c, _, fmt in stats)
        lines.append(f"| {rank} | {feature} | {values}{fires} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
