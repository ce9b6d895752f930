"""The end-of-run summary: corpus, SAE quality, and each method's top features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_text
from polyglot_sae.causal.dictionary import headline as dictionary_headline
from polyglot_sae.causal.verdict import headline as causal_headline
from polyglot_sae.layers.report import layer_lines
from polyglot_sae.paired import report as paired_report


def _quality_lines(quality: dict[str, Any], maxacts_path: str, d_sae: int) -> list[str]:
    maxacts = pl.scan_parquet(maxacts_path)
    fired = maxacts.group_by("lang").agg(pl.col("feature_id").n_unique()).collect()
    alive_all = (maxacts.group_by("feature_id").agg(pl.col("lang").n_unique())
                 .filter(pl.col("lang") == fired.height).collect().height)
    lines = [f"SAE at `{quality['hook']}`, d_sae {d_sae}; quality on {quality['eval_pairs']} "
             "held-out pairs (SAE spliced in at non-special tokens):", "",
             "| lang | tokens | L0 | FVE | LM loss clean | with SAE | delta |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for lang, q in quality["per_language"].items():
        lines.append(f"| {lang} | {q['tokens']} | {q['l0']:.1f} | {q['fve']:.3f} | "
                     f"{q['ce_clean']:.3f} | {q['ce_spliced']:.3f} | {q['ce_delta']:+.3f} |")
    n_pairs = read_metadata(maxacts_path).get("n_pairs")
    per_lang = ", ".join(f"{r['lang']} {1 - r['feature_id'] / d_sae:.1%}"
                         for r in fired.sort("lang").iter_rows(named=True))
    lines += ["", f"Dead latents on the {n_pairs} scored pairs (never fire): {per_lang}; "
              f"alive in every language: {alive_all} of {d_sae} ({alive_all / d_sae:.1%}).", ""]
    return lines


def _headline(scores: pl.DataFrame, method: str) -> str:
    alive = int((~scores["dead"]).sum())
    if "q_value" not in scores.columns:
        return f"Method {method}: {alive} alive features ranked (no permutation null run)."
    significant = int((scores["q_value"] < 0.05).sum())
    return (f"**Method {method}: {significant} features bilingual at q < 0.05** (permutation null "
            f"over the pairing between languages, Benjamini-Hochberg), of {alive} alive.")


def _significant_top(scores: pl.DataFrame, k: int = 10) -> list[str]:
    """The most bilingual features among those the null calls significant: on a small SAE the
    overall top list is crowded with near-dead features the null rejects."""
    if "q_value" not in scores.columns:
        return []
    top = scores.filter(pl.col("q_value") < 0.05).sort("rank").head(k)
    if top.height == 0:
        return []
    lines = ["Most bilingual among the significant features (q < 0.05), by rank:", "",
             "| rank | feature | BI score | JSD | p | q |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rank']} | {r['feature_id']} | {r['bi_score']:.4g} | {r['jsd']:.3g} | "
              f"{r['p_value']:.3g} | {r['q_value']:.3g} |" for r in top.iter_rows(named=True)]
    return lines + [""]


def _agreement(a: pl.DataFrame, b: pl.DataFrame, k: int) -> str:
    top_a = set(a.filter(pl.col("rank") < k)["feature_id"].to_list())
    top_b = set(b.filter(pl.col("rank") < k)["feature_id"].to_list())
    union = top_a | top_b
    return f"{len(top_a & top_b)} of {k} shared (Jaccard {len(top_a & top_b) / max(1, len(union)):.2f})"


def _paired_section(inputs, i: int, scores: pl.DataFrame, langs: list[str], top_k: int) -> list[str]:
    """The paired method first: its class headline, its top features with their words, the
    paraphrase alignment and the translation-lexicon check."""
    lines = []
    if "paraphrase" in inputs.keys():
        lines += [paired_report.paraphrase_line(json.loads(Path(inputs.paraphrase).read_text())), ""]
    key = ("min(rho_lo, r_word_lo), the verse- and word-level bounds" if "r_word_lo" in
           scores.columns else "rho's lower bound")
    lines += [f"Top {top_k} of the paired ranking (concept features first, then by {key}):", ""]
    lines += paired_report.top_table(scores, pl.read_parquet(inputs.words[i]), langs, top_k)
    lines += [""]
    if "lexicon" in inputs.keys():
        lines += paired_report.lexicon_lines(pl.read_parquet(inputs.lexicon[i])) + [""]
    return lines


def write_summary(inputs, cfg: dict[str, Any], run: str, out_path: str) -> None:
    corpus = json.loads(Path(inputs.corpus).read_text())
    methods = cfg["methods"]
    lines = [f"# polyglot-sae run `{run}`", ""]
    if "paired" in methods:  # the answer first: what the paired method finds, per SAE
        for i, sae in enumerate(cfg["saes"]):
            paired = pl.read_parquet(inputs.scores[i * len(methods) + methods.index("paired")])
            lines += [f"SAE `{sae}`: " + paired_report.headline(paired, list(corpus["langs"])), ""]
    if "causal" in inputs.keys():  # does the model use the top features, in each language?
        for sae, path in zip(cfg["saes"], inputs.causal):
            lines += [f"SAE `{sae}`: " + causal_headline(pl.read_parquet(path)), ""]
    if "dictionary" in inputs.keys():
        for i, (sae, path) in enumerate(zip(cfg["saes"], inputs.dictionary)):
            scores = (pl.read_parquet(inputs.scores[i * len(methods) + methods.index("paired")])
                      if "paired" in methods else None)
            lines += [f"SAE `{sae}`: " + dictionary_headline(
                pl.read_parquet(path), scores, list(corpus["langs"]),
                read_metadata(path).get("validation")), ""]
    if "layers" in inputs.keys():
        lines += layer_lines(pl.read_parquet(inputs.layers), list(corpus["langs"]))
    lines += [f"Corpus: {corpus['pairs']} aligned pairs ({', '.join(corpus['langs'])}); "
              f"{corpus['dropped_empty']} pairs with an empty side dropped.", ""]
    bi_methods = [m for m in methods if m != "paired"]
    for i, sae in enumerate(cfg["saes"]):
        quality = json.loads(Path(inputs.quality[i]).read_text())
        scores = {m: pl.read_parquet(inputs.scores[i * len(methods) + j])
                  for j, m in enumerate(methods)}
        lines += [f"## SAE `{sae}`", ""]
        if "paired" in scores:
            lines += _paired_section(inputs, i, scores["paired"], list(corpus["langs"]),
                                     cfg.get("top_k", 25))
        lines += _quality_lines(quality, inputs.maxacts[i], quality["d_sae"])
        for j, method in enumerate(methods):
            if method == "paired":
                lines += [Path(inputs.top[i * len(methods) + j]).read_text(), ""]
                continue
            rho = json.loads(Path(inputs.mono[i * len(bi_methods) + bi_methods.index(method)])
                             .read_text())
            lines += [_headline(scores[method], method) + f" Spearman(bi_score, monolinguality "
                      f"nu_max) = {rho['rho']:.3f} over {rho['n_features']} features.", ""]
            lines += _significant_top(scores[method])
            lines += [Path(inputs.top[i * len(methods) + j]).read_text(), ""]
        for a, b in zip(methods, methods[1:]):
            lines += [f"Top-25 agreement between methods {a} and {b}: "
                      f"{_agreement(scores[a], scores[b], 25)}; top-100: "
                      f"{_agreement(scores[a], scores[b], 100)}.", ""]
    if len(cfg["saes"]) > 1:
        table = pl.read_parquet(inputs.saes)
        lines += ["## SAEs side by side", "", "| SAE | hook | d_sae | method | alive | q < 0.05 |",
                  "|---|---|---:|---|---:|---:|"]
        lines += [f"| {r['sae']} | `{r['hook']}` | {r['d_sae']} | {r['method']} | {r['n_alive']} | "
                  f"{'' if r['n_significant'] is None else r['n_significant']} |"
                  for r in table.iter_rows(named=True)]
    write_text("\n".join(lines), out_path)
