"""The layer profile: where in the model features become language-agnostic.

One row per hook (one SAE each), in layer order, from tables the other stages already wrote:

- SAE quality (`activations.sae_eval`): L0, fraction of variance explained and the next-token
  loss increase with the SAE spliced in, averaged over languages weighted by their tokens; the
  share of dead features.
- The paired method's classes (`paired.classes`): count and share of all features per class,
  and the median cross-language correlation `rho` of the supported features.
- Active-set overlap per sentence pair: the intersection over union of the features active
  (max > 0) in the two sentences of a pair, for each language pair; against the same for the
  first language and its paraphrase (the ceiling: same language, same meaning) and for random
  pairs (the first language of one pair against the second of another, a seeded derangement:
  the floor). Means with percentile-bootstrap intervals over pairs.
- The logit lens (`logit_lens.enrichment`): the share of alive features whose decoder direction
  promotes each language's tokens, by the rule of `logit_lens.join` (q < alpha, AUC > 0.5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from polyglot_sae.errors import InputError
from polyglot_sae.logit_lens.join import JoinConfig
from polyglot_sae.paired.report import SUPPORTED

# The classes the profile counts (lang_specific per language is added per run).
CLASSES = ("concept", "context", "shared_string", "length", "weak", "low_support", "dead")
# Hook kinds within one block, in the order the residual stream meets them.
_KINDS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out",
          "hook_resid_post")


@dataclass(frozen=True)
class LayerConfig:
    """The layer profile's settings."""

    # bootstrap resamples of the pairs for the overlap intervals (95%, percentile)
    bootstrap: int = 200
    # seed of the resamples and of the random pairing
    seed: int = 0


def hook_order(hook: str) -> tuple[float, int]:
    """Where a hook sits in the forward pass: (layer, kind within the block); hooks outside
    the blocks (embedding before, final norm after) at either end."""
    match = re.match(r"^blocks\.(\d+)\.(\w+)$", hook)
    if match is None:
        return (-1.0 if "embed" in hook else float("inf"), 0)
    kind = match.group(2)
    return (float(match.group(1)), _KINDS.index(kind) if kind in _KINDS else len(_KINDS))


def check_one_per_hook(entries: Sequence[dict[str, Any]]) -> None:
    """The profile compares one SAE per hook: two at one hook (e.g. of different widths) make
    its x axis ambiguous."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        other = seen.setdefault(entry["hook"], entry)
        if other is not entry:
            widths = [e.get("train", {}).get("d_sae", "?") for e in (other, entry)]
            raise InputError(
                f"config saes[{other['id']}] and saes[{entry['id']}]", "hook",
                f"both read {entry['hook']} (d_sae {widths[0]} and {widths[1]}); the layer "
                "profile compares one SAE per hook",
                "list one SAE per hook in layers.saes (or move one to another hook)")


def active_sets_iou(maxacts: pl.DataFrame, a: str, b: str,
                    shift: dict[int, int] | None = None) -> np.ndarray:
    """Per pair (sorted by pair id, pairs where either sentence has an active feature), the
    IoU of the features active in language `a` and in language `b`; with `shift`, language b
    of pair shift[p] stands in for language b of pair p."""
    active = maxacts.filter(pl.col("value") > 0).select("pair_id", "lang", "feature_id")
    left = active.filter(pl.col("lang") == a).drop("lang")
    right = active.filter(pl.col("lang") == b).drop("lang")
    if shift is not None:
        back = pl.DataFrame({"pair_id": list(shift.values()), "new": list(shift.keys())},
                            schema={"pair_id": pl.UInt32, "new": pl.UInt32})
        right = right.join(back, on="pair_id").select(pl.col("new").alias("pair_id"),
                                                      "feature_id")
    sizes = (left.group_by("pair_id").len("n_a")
             .join(right.group_by("pair_id").len("n_b"), on="pair_id", how="full",
                   coalesce=True)
             .join(left.join(right, on=["pair_id", "feature_id"]).group_by("pair_id").len("n_ab"),
                   on="pair_id", how="left")
             .fill_null(0).sort("pair_id"))
    n_ab = sizes["n_ab"].to_numpy().astype(float)
    return n_ab / (sizes["n_a"].to_numpy() + sizes["n_b"].to_numpy() - n_ab)


def derangement(pair_ids: np.ndarray, seed: int) -> dict[int, int]:
    """A seeded pairing of each pair with another (no pair with itself)."""
    ids = np.sort(np.asarray(pair_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    # a cyclic shift of a random order: nobody lands on their own place
    return {int(ids[order[i]]): int(ids[order[(i + 1) % len(ids)]]) for i in range(len(ids))}


def bootstrap_mean(values: np.ndarray, n: int, seed: int) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval over the values (resampled with
    replacement)."""
    if values.size == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n, values.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(values.mean()), float(lo), float(hi)


def overlap_columns(maxacts: pl.DataFrame, langs: Sequence[str], para: pl.DataFrame | None,
                    cfg: LayerConfig) -> dict[str, float]:
    """iou_{a}_{b} for every language pair, iou_para (first language against its paraphrase)
    and iou_random, each with _lo and _hi."""
    out: dict[str, float] = {}

    def put(name: str, values: np.ndarray) -> None:
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = bootstrap_mean(values, cfg.bootstrap,
                                                                         cfg.seed)

    for i, a in enumerate(langs):
        for b in langs[i + 1:]:
            put(f"iou_{a}_{b}", active_sets_iou(maxacts, a, b))
    if para is not None:
        para_lang = para["lang"][0] if para.height else f"{langs[0]}_para"
        put("iou_para", active_sets_iou(pl.concat([maxacts.select(para.columns), para]),
                                        langs[0], para_lang))
    pairs = maxacts["pair_id"].unique().to_numpy()
    put("iou_random", active_sets_iou(maxacts, langs[0], langs[1],
                                      derangement(pairs, cfg.seed)))
    return out


def quality_columns(quality: dict[str, Any]) -> dict[str, float]:
    """L0, FVE and the loss increase over all languages, weighted by their tokens."""
    per = quality["per_language"].values()
    tokens = np.array([q["tokens"] for q in per], dtype=float)
    return {name: float(np.average([q[key] for q in per], weights=tokens))
            for name, key in (("l0", "l0"), ("fve", "fve"), ("ce_delta", "ce_delta"))}


def class_columns(paired: pl.DataFrame, langs: Sequence[str]) -> dict[str, float]:
    """n_{class} and share_{class} (of all features) per paired class, the dead share, and
    the median rho of the supported features."""
    for column in ("class", "rho", "dead"):
        if column not in paired.columns:
            raise InputError("paired scores", column, "missing column",
                             "score with method paired (score.methods)")
    counts = dict(paired.group_by("class").len().iter_rows())
    out: dict[str, float] = {}
    for name in (*CLASSES, *(f"lang_specific:{lang}" for lang in langs)):
        key = name.replace(":", "_")
        out[f"n_{key}"] = int(counts.get(name, 0))
        out[f"share_{key}"] = counts.get(name, 0) / paired.height
    supported = paired.filter(pl.col("class").is_in(list(SUPPORTED)))["rho"].drop_nulls()
    out["median_rho"] = float(supported.median()) if supported.len() else float("nan")
    out["n_supported"] = int(supported.len())
    return out


def logit_lens_columns(enrichment: pl.DataFrame, paired: pl.DataFrame,
                       langs: Sequence[str], join: JoinConfig = JoinConfig()) -> dict[str, float]:
    """promotes_{L}: the share of alive features whose decoder direction promotes language L's
    tokens (logit_lens.join's rule)."""
    alive = paired.filter(~pl.col("dead"))["feature_id"].cast(pl.UInt32)
    q_column = "q_dir_greater" if join.null == "direction" else "q_greater"
    out = {}
    for lang in langs:
        rows = enrichment.filter((pl.col("set_name") == f"{join.set_prefix}{lang}")
                                 & pl.col("feature_id").cast(pl.UInt32).is_in(alive.implode()))
        promoted = ((rows[q_column] < join.alpha) & (rows["auc"] > join.min_auc)).sum()
        out[f"promotes_{lang}"] = promoted / max(alive.len(), 1)
    return out
