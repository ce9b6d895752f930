"""What the causal check tests, from tables alone: the features under test and why, the
control features, the held-out pool, each feature's words and steering strength."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.errors import InputError

# Paired classes whose top features are not tested on their own: nothing to check (dead), or
# no claim behind them (weak, low_support).
SKIPPED_CLASSES = ("dead", "weak", "low_support")


def features_under_test(scores: Mapping[str, pl.DataFrame], *, top_n: int, class_top_n: int,
                        extra: Sequence[int], d_sae: int) -> dict[int, list[str]]:
    """Feature id -> why it is tested, in order: ``{method}:top{top_n}`` for the top_n by rank
    of each method, ``paired:{class}`` for the class_top_n of each class of a table with a ``class``
    column (by rank, then rho_lo descending, then feature id; nulls last), ``config`` for the
    `extra` ids."""
    out: dict[int, list[str]] = {}

    def add(ids: Sequence[int], why: str) -> None:
        for i in ids:
            out.setdefault(int(i), []).append(why)

    for method, table in scores.items():
        for col in ("feature_id", "rank"):
            if col not in table.columns:
                raise InputError(f"scores ({method})", col, "missing column",
                                 "pass the score table the score step wrote")
        ranked = table.filter(pl.col("rank").is_not_null()).sort("rank", "feature_id")
        add(ranked["feature_id"].head(top_n).to_list(), f"{method}:top{top_n}")
    for method, table in scores.items():
        if not class_top_n or "class" not in table.columns:
            continue
        keys = ["rank"] + (["rho_lo"] if "rho_lo" in table.columns else []) + ["feature_id"]
        desc = [k == "rho_lo" for k in keys]
        for cls in sorted(set(table["class"].drop_nulls().to_list()) - set(SKIPPED_CLASSES)):
            part = table.filter(pl.col("class") == cls).sort(keys, descending=desc,
                                                             nulls_last=True)
            add(part["feature_id"].head(class_top_n).to_list(), f"{method}:{cls}")
    bad = [int(i) for i in extra if not 0 <= int(i) < d_sae]
    if bad:
        raise InputError("config", "causal.features", f"feature ids {bad} are outside the "
                         f"SAE's {d_sae} features", f"list ids from 0 to {d_sae - 1}")
    add(list(extra), "config")
    return out


def firing_rates(maxacts: pl.DataFrame, langs: Sequence[str], d_sae: int, n_pairs: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the share of (pair, language) sentences of the scored pairs where it fires,
    and whether it fires in every language (alive)."""
    counts = (maxacts.filter(pl.col("lang").is_in(list(langs)))
              .group_by("feature_id", "lang").len().collect()
              if isinstance(maxacts, pl.LazyFrame) else
              maxacts.filter(pl.col("lang").is_in(list(langs))).group_by("feature_id", "lang").len())
    per_lang = np.zeros((len(langs), d_sae))
    for f, lang, n in counts.iter_rows():
        if f < d_sae:
            per_lang[list(langs).index(lang), f] = n
    rate = per_lang.sum(0) / max(1, n_pairs * len(langs))
    return rate, (per_lang > 0).all(0)


def control_features(rates: np.ndarray, magnitude: np.ndarray, candidates: np.ndarray,
                     targets: Sequence[int], n: int) -> list[int]:
    """`n` candidate features matched to `targets` on firing rate and activation magnitude
    (what an ablation's size follows): in the plane (log rate, log magnitude), each axis scaled
    by the candidates' spread, control slot k takes the unused candidate nearest to target
    k mod T (targets in order of log rate; ties by feature id). Every target then has about
    n / T controls of its own, and the controls follow the targets' joint distribution instead
    of bunching at its centre."""
    pool = np.flatnonzero(candidates & np.isfinite(magnitude) & (magnitude > 0))
    targets = [t for t in targets if np.isfinite(magnitude[t]) and magnitude[t] > 0] or \
        list(targets)
    if n == 0 or pool.size == 0 or len(targets) == 0:
        return []
    point = np.stack([np.log(np.maximum(rates, 1e-12)),
                      np.log(np.where(magnitude > 0, magnitude, np.nan))], axis=1)
    scale = np.nanstd(point[pool], axis=0)
    point = point / np.where(scale > 0, scale, 1.0)
    order = sorted(targets, key=lambda t: (point[t, 0], t))
    chosen: list[int] = []
    free = np.ones(pool.size, dtype=bool)
    for k in range(n):
        if not free.any():
            break
        want = np.nan_to_num(point[order[k % len(order)]], nan=0.0)
        dist = np.where(free, ((point[pool] - want) ** 2).sum(1), np.inf)
        at = int(np.argmin(dist))  # argmin takes the first: pool is sorted by feature id
        chosen.append(int(pool[at]))
        free[at] = False
    return sorted(chosen)


def calibration_features(rates: np.ndarray, candidates: np.ndarray, targets: Sequence[int],
                         seed: int, nearest: int = 10) -> list[int]:
    """Per target, a random candidate among the `nearest` unused ones of closest log firing
    rate (seeded): features like the tested ones in how often they fire, chosen by chance."""
    pool = np.flatnonzero(candidates)
    log_rate = np.log(np.maximum(rates, 1e-12))
    rng = np.random.default_rng([seed, 7])
    free = np.ones(pool.size, dtype=bool)
    chosen = []
    for t in targets:
        dist = np.where(free, np.abs(log_rate[pool] - log_rate[t]), np.inf)
        near = np.argsort(dist, kind="stable")[:nearest]
        near = near[np.isfinite(dist[near])]
        if near.size == 0:
            break
        at = int(rng.choice(near))
        chosen.append(int(pool[at]))
        free[at] = False
    return sorted(chosen)


def heldout_pool(pairs: pl.DataFrame, train_path: str | Path, score_path: str | Path,
                 pairs_path: str | Path, n_pairs: int, seed: int, part: int = 0) -> pl.DataFrame:
    """Up to `n_pairs` pairs in neither split, in a seeded order (column ``order``), every
    language's row of each: part k of the seeded permutation of the held-out pairs, so parts
    0, 1, 2 are disjoint pools."""
    used = pl.concat([pl.read_parquet(p, columns=["pair_id"]) for p in (train_path, score_path)])
    ids = np.setdiff1d(pairs["pair_id"].unique().to_numpy(), used["pair_id"].to_numpy())
    if ids.size == 0:
        raise InputError(pairs_path, "pair_id", "no held-out pairs: every pair is in the SAE's "
                         "training split or the scored split",
                         "use a larger corpus, or fewer split.train_pairs / split.score_pairs")
    order = np.random.default_rng(seed).permutation(np.sort(ids))[part * n_pairs:
                                                                    (part + 1) * n_pairs]
    if order.size == 0:
        raise InputError(pairs_path, "pair_id", f"{ids.size} held-out pairs hold no part "
                         f"{part} of {n_pairs} pairs", "use a smaller causal.pool_part or "
                         "causal.pool_pairs")
    keyed = pl.DataFrame({"pair_id": order.astype(np.uint32),
                          "order": np.arange(order.size, dtype=np.int64)})
    return (pairs.with_columns(pl.col("pair_id").cast(pl.UInt32)).join(keyed, on="pair_id")
            .sort("order", "lang"))


def feature_words(maxacts: pl.DataFrame, features: Sequence[int], langs: Sequence[str], *,
                  top_pairs: int, k: int) -> dict[int, dict[str, list[int]]]:
    """Per feature and language, the `k` most frequent ``token_id`` at its maxima over its
    `top_pairs` top-activating pairs (ties by summed activation, then token id)."""
    if "token_id" not in maxacts.columns:
        raise InputError("maxacts", "token_id", "the max table has no token of each maximum",
                         "rebuild it with the reduce rule of this version")
    top = (maxacts.filter(pl.col("feature_id").is_in(list(features))
                          & pl.col("lang").is_in(list(langs)))
           .sort("value", "pair_id", descending=[True, False])
           .group_by("feature_id", "lang", maintain_order=True).head(top_pairs)
           .group_by("feature_id", "lang", "token_id")
           .agg(n=pl.len(), mass=pl.col("value").sum())
           .sort(["feature_id", "lang", "n", "mass", "token_id"],
                 descending=[False, False, True, True, False])
           .group_by("feature_id", "lang", maintain_order=True).head(k))
    out: dict[int, dict[str, list[int]]] = {int(f): {lang: [] for lang in langs}
                                            for f in features}
    for f, lang, tok, *_ in top.iter_rows():
        out[int(f)][lang].append(int(tok))
    return out


def median_activation(maxacts: pl.DataFrame, features: Sequence[int]) -> dict[int, float]:
    """Per feature, the median of its nonzero per-(pair, language) maxima (NaN if none)."""
    med = (maxacts.filter(pl.col("feature_id").is_in(list(features)) & (pl.col("value") > 0))
           .group_by("feature_id").agg(pl.col("value").cast(pl.Float64).median()))
    got = dict(med.iter_rows())
    return {int(f): float(got.get(f, float("nan"))) for f in features}
