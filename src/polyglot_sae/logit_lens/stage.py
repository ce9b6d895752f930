"""The logit-lens stage: every feature's logit-weight statistics, classes and token-set
enrichment for one SAE, and their join with the bilingual scores. The numerics live in
``core``, ``enrichment``, ``join`` and ``token_sets``, the figures in ``plots``; this module wires them to
the pipeline's files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.errors import InputError
from polyglot_sae.logit_lens.core import analyse, logit_weights, unembed_lens, write_result
from polyglot_sae.logit_lens.enrichment import EnrichmentConfig
from polyglot_sae.logit_lens.join import JoinConfig, join_bilingual
from polyglot_sae.logit_lens.plots import plot_language_promotion, plot_logit_histogram, plot_skew_kurtosis
from polyglot_sae.logit_lens.token_sets import (LanguageSetConfig, load_user_sets, regex_sets, language_sets,
                         vocabulary)


@dataclass(frozen=True)
class LensStageConfig:
    """What the stage computes beyond the library defaults."""

    # random residual directions behind the enrichment's direction null (0: token null only)
    null_directions: int = 256
    # language sets: a token needs this many occurrences in the scored pairs' token tables ...
    min_count: int = 5
    # ... and this share of its (per-language-rate) occurrences in one language
    min_share: float = 0.9
    # a JSON file {set name: [token strings or ids]} of extra sets; None = none
    user_sets: str | None = None
    # the feature whose logit-weight histogram is drawn; None = the feature that promotes
    # histogram_set most (largest AUC)
    histogram_feature: int | None = None
    # the set the histogram splits the vocabulary by; None = the last corpus language's set
    # (lang_es for en, es), so any language pair works without a setting
    histogram_set: str | None = None


def logit_lens_stage(model_dir: str | Path, sae_dir: str | Path, token_shards: Sequence[str],
                     langs: Sequence[str], out: Mapping[str, str], *,
                     config: LensStageConfig = LensStageConfig()) -> dict[str, Any]:
    """Writes ``out["stats"]``, ``out["enrichment"]`` (Parquet), ``out["classes"]`` (skewness
    vs kurtosis by class) and ``out["histogram"]`` (one feature's logit weights split by a
    set); returns the provenance."""
    from polyglot_sae.model.load import load_model
    from polyglot_sae.model.saes import load_sae

    model = load_model(model_dir)
    lens = unembed_lens(model)
    W_dec = load_sae(sae_dir).W_dec.detach().float()
    vocab = vocabulary(model.tokenizer, lens.d_vocab)
    sets = regex_sets(vocab)
    tokens = pl.concat([pl.read_parquet(p) for p in token_shards])
    by_lang, _ = language_sets(tokens, vocab, LanguageSetConfig(
        langs=tuple(langs), min_count=config.min_count, min_share=config.min_share))
    sets = sets.merge(by_lang)
    unknown = {}
    if config.user_sets:
        extra, unknown = load_user_sets(config.user_sets, vocab)
        sets = sets.merge(extra)
    result = analyse(lens, W_dec, token_sets=sets,
                     enrichment_config=EnrichmentConfig(null_directions=config.null_directions))
    # Token strings beside the ids, so readers (the feature pages) need no tokenizer.
    strings = pl.Series(vocab.strings, dtype=pl.String)
    stats = result.stats.with_columns(
        top_tokens=pl.col("top_ids").list.eval(pl.element().cast(pl.Int64)).map_elements(
            lambda ids: strings.gather(ids).to_list(), return_dtype=pl.List(pl.String)),
        bottom_tokens=pl.col("bottom_ids").list.eval(pl.element().cast(pl.Int64)).map_elements(
            lambda ids: strings.gather(ids).to_list(), return_dtype=pl.List(pl.String)))
    result = replace(result, stats=stats)
    write_result(result, out["stats"], out["enrichment"], model=str(model_dir), sae=str(sae_dir),
                 user_sets_unknown=unknown)
    plot_skew_kurtosis(result.stats, out["classes"], note=f"SAE {Path(sae_dir).name}")

    set_name = config.histogram_set or f"{LanguageSetConfig.prefix}{langs[-1]}"
    if set_name not in sets.names:
        raise InputError("config logit_lens", "histogram_set", f"no token set {set_name!r}",
                         f"use one of {list(sets.names)}")
    rows = result.enrichment.filter(pl.col("set_name") == set_name)
    feature = (config.histogram_feature if config.histogram_feature is not None
               else int(rows.sort("auc", descending=True)["feature_id"][0]))
    if not 0 <= feature < W_dec.shape[0]:
        raise InputError("config logit_lens", "histogram_feature", f"{feature} is not a feature "
                         f"of this SAE (d_sae {W_dec.shape[0]})", "pick an id below d_sae")
    row = rows.filter(pl.col("feature_id") == feature).row(0, named=True)
    values = logit_weights(lens, W_dec[[feature]])[0].numpy()
    plot_logit_histogram(values, sets.mask(set_name), out["histogram"], feature_id=feature,
                         set_name=set_name, universe=vocab.universe, auc=row["auc"],
                         q_value=row.get("q_dir_greater", row.get("q_greater")))
    return result.provenance


def lens_join_stage(scores_path: str | Path, enrichment_path: str | Path,
                    out: Mapping[str, str], langs: Sequence[str], *,
                    note: str = "") -> pl.DataFrame:
    """Do the significant bilingual features promote both languages' tokens, or one? Writes
    the per-feature table (``out["table"]``), the crosstab (``out["crosstab"]``) and its plot
    (``out["plot"]``); returns the crosstab."""
    scores = pl.read_parquet(scores_path)
    config = JoinConfig() if "q_value" in scores.columns else JoinConfig(bilingual_top_k=25)
    per_feature, crosstab = join_bilingual(scores, pl.read_parquet(enrichment_path), langs,
                                           config)
    meta = read_metadata(enrichment_path) | {"join": {"alpha": config.alpha,
                                                      "null": config.null,
                                                      "bilingual_top_k": config.bilingual_top_k}}
    write_parquet(per_feature, out["table"], meta)
    write_parquet(crosstab, out["crosstab"], meta)
    plot_language_promotion(crosstab, out["plot"], langs, join_config=config, note=note)
    return crosstab
