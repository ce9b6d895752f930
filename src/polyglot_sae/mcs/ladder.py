"""Dictionaries compared as a ladder: the high/low MCS split, the per-width table, the test of
bilingual features against MCS, and the SAE-folder entry points (see ``mcs.core``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from jaxtyping import Bool, Float, Float32
from scipy import stats

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.errors import InputError


from polyglot_sae.mcs.baseline import emd_matrix, random_baseline_mcs
from polyglot_sae.mcs.core import MCS_SCHEMA, McsConfig, max_cosine_similarity


def mcs_split(mcs: Float[np.ndarray, " m"], threshold: float) -> dict[str, float | int]:
    """Counts and shares of high-MCS (>= threshold) and low-MCS features."""
    mcs = np.asarray(mcs)
    n = int(mcs.size)
    high = int((mcs >= threshold).sum())
    return {"n_features": n, "n_high": high, "n_low": n - high,
            "share_high": high / n if n else math.nan,
            "share_low": (n - high) / n if n else math.nan}


def ladder_table(
    entries: Sequence[tuple[int, int, Float[np.ndarray, " _"]]],
    *,
    random_baselines: Mapping[int, Float[np.ndarray, "s _"]] | None = None,
    config: McsConfig = McsConfig(),
) -> pl.DataFrame:
    """The post's counts and proportions by width: one row per (width, seed, MCS against the
    reference dictionary) entry, sorted by width then seed, with

    - n_features, n_high, n_low, share_high at ``config.threshold``;
    - emd_to_random: mean EMD of the entry's MCS sample to each random-baseline sample of its
      width (``random_baselines[width]``, seeds x features, e.g. ``random_baseline_mcs``);
    - emd_random_to_random: mean EMD between those random samples, the yardstick the post
      reads emd_to_random against (null with fewer than two seeds).

    Both EMDs use only values < threshold when ``config.emd_low_only``; null without a baseline.
    """
    below = config.threshold if config.emd_low_only else None
    rows = []
    for width, seed, mcs in entries:
        row: dict[str, Any] = {"width": int(width), "seed": int(seed),
                               **mcs_split(mcs, config.threshold)}
        row.pop("share_low")
        row["emd_to_random"] = row["emd_random_to_random"] = None
        baseline = None if random_baselines is None else random_baselines.get(int(width))
        if baseline is not None:
            baseline = np.atleast_2d(np.asarray(baseline))
            named = {"learned": mcs, **{f"random{k}": r for k, r in enumerate(baseline)}}
            dist = emd_matrix(named, below=below).drop("name").to_numpy()
            row["emd_to_random"] = _mean_or_none(dist[0, 1:])
            pairs = [dist[i, j] for i, j in itertools.combinations(range(1, len(named)), 2)]
            row["emd_random_to_random"] = _mean_or_none(np.array(pairs))
        rows.append(row)
    schema = {"width": pl.Int64, "seed": pl.Int64, "n_features": pl.Int64, "n_high": pl.Int64,
              "n_low": pl.Int64, "share_high": pl.Float64, "emd_to_random": pl.Float64,
              "emd_random_to_random": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort("width", "seed")


def _mean_or_none(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def bilingual_vs_mcs(
    mcs: Float[np.ndarray, " d_sae"],
    significant: Bool[np.ndarray, " d_sae"],
    alive: Bool[np.ndarray, " d_sae"],
    *,
    threshold: float = McsConfig.threshold,
) -> dict[str, Any]:
    """Are the significant bilingual features more often high-MCS than the other alive ones?

    Among alive features, the 2x2 table (significant x MCS >= threshold) with Fisher's exact
    test (one-sided, 'greater': significant features are enriched in high MCS) and its sample
    odds ratio (sig_high * other_low) / (sig_low * other_high), and a one-sided Mann-Whitney U
    test that significant features' MCS values are stochastically larger (no threshold).

    ``status`` is "ok", or names why the tests could not run ("no alive features", "no
    significant alive features", "no other alive features"); the statistics are then NaN.
    """
    mcs = np.asarray(mcs, dtype=np.float64)
    significant, alive = np.asarray(significant), np.asarray(alive)
    for name, arr in (("significant", significant), ("alive", alive)):
        if arr.dtype != np.bool_:
            raise InputError("bilingual_vs_mcs", name, f"dtype {arr.dtype}", "pass a boolean mask")
        if arr.shape != mcs.shape:
            raise InputError("bilingual_vs_mcs", name, f"shape {arr.shape} != mcs {mcs.shape}",
                             "pass one entry per feature, in feature_id order")
    if np.isnan(mcs[alive]).any():
        raise InputError("bilingual_vs_mcs", "mcs", "NaN for an alive feature",
                         "compute MCS for every feature")
    sig = significant & alive
    other = ~significant & alive
    high = mcs >= threshold
    counts = {"sig_high": int((sig & high).sum()), "sig_low": int((sig & ~high).sum()),
              "other_high": int((other & high).sum()), "other_low": int((other & ~high).sum())}
    n_sig, n_other = int(sig.sum()), int(other.sum())
    out: dict[str, Any] = {
        "threshold": float(threshold), "n_alive": int(alive.sum()), "n_significant": n_sig,
        "n_other": n_other, **counts,
        "share_high_significant": counts["sig_high"] / n_sig if n_sig else math.nan,
        "share_high_other": counts["other_high"] / n_other if n_other else math.nan,
        "median_mcs_significant": float(np.median(mcs[sig])) if n_sig else math.nan,
        "median_mcs_other": float(np.median(mcs[other])) if n_other else math.nan,
        "odds_ratio": math.nan, "fisher_p": math.nan, "mannwhitney_u": math.nan,
        "mannwhitney_p": math.nan,
    }
    if not alive.any():
        out["status"] = "no alive features"
    elif n_sig == 0:
        out["status"] = "no significant alive features"
    elif n_other == 0:
        out["status"] = "no other alive features"
    else:
        out["status"] = "ok"
        table = [[counts["sig_high"], counts["sig_low"]], [counts["other_high"], counts["other_low"]]]
        fisher = stats.fisher_exact(table, alternative="greater")
        mwu = stats.mannwhitneyu(mcs[sig], mcs[other], alternative="greater")
        out.update(odds_ratio=float(fisher.statistic), fisher_p=float(fisher.pvalue),
                   mannwhitney_u=float(mwu.statistic), mannwhitney_p=float(mwu.pvalue))
    return out


# --- SAE folders --------------------------------------------------------------------------------


def decoder_directions(sae_dir: str | Path) -> Float32[np.ndarray, "d_sae d_in"]:
    """W_dec of an sae-lens SAE folder as float32, one row per feature."""
    from polyglot_sae.model import saes

    sae = saes.load_sae(sae_dir)
    w = sae.W_dec.detach().to(device="cpu").float().numpy()
    expected = (int(sae.cfg.d_sae), int(sae.cfg.d_in))
    if w.shape != expected:
        raise InputError(sae_dir, "W_dec", f"shape {w.shape}, expected (d_sae, d_in) = {expected}",
                         "save the SAE with sae-lens (W_dec is d_sae x d_in)")
    return w


def mcs_between_saes(
    sae_dir: str | Path, reference_dir: str | Path, out: str | Path, *,
    config: McsConfig = McsConfig(), provenance: Mapping[str, Any] | None = None,
) -> Path:
    """MCS of every feature of one SAE against another's decoder, written atomically as
    Parquet ``feature_id:u32, mcs:f32, match_id:u32`` (match_id: the reference feature of
    highest cosine), sorted by feature_id, with provenance in the file metadata."""
    from polyglot_sae.device import resolve_device

    device = resolve_device(config.device)
    w = decoder_directions(sae_dir)
    ref = decoder_directions(reference_dir)
    if w.shape[1] != ref.shape[1]:
        raise InputError(reference_dir, "d_in", f"{ref.shape[1]} != {w.shape[1]} of {sae_dir}",
                         "compare SAEs trained on the same hook of the same model")
    mcs, match = max_cosine_similarity(w, ref, chunk_rows=config.chunk_rows, device=device,
                                       block_bytes=config.block_bytes)
    table = pl.DataFrame({"feature_id": np.arange(w.shape[0], dtype=np.uint32), "mcs": mcs,
                          "match_id": match.astype(np.uint32)}, schema=MCS_SCHEMA)
    meta = {"sae": str(sae_dir), "reference": str(reference_dir), "d_sae": w.shape[0],
            "reference_d_sae": ref.shape[0], "d_in": w.shape[1],
            "device": device, "precision": "float32 matmul of float32 unit rows",
            "threshold": config.threshold, **mcs_split(mcs, config.threshold), **(provenance or {})}
    return write_parquet(table, out, meta, byte_stream_split=["mcs"])


def read_mcs(path: str | Path) -> pl.DataFrame:
    """A table written by ``mcs_between_saes``, checked against its schema."""
    table = pl.read_parquet(path)
    wrong = {c: str(table.schema.get(c)) for c, t in MCS_SCHEMA.items() if table.schema.get(c) != t}
    if wrong:
        raise InputError(path, ", ".join(wrong), f"missing or mistyped ({wrong})",
                         "write the file with mcs_between_saes")
    return table.select(list(MCS_SCHEMA))


@dataclass(frozen=True)
class Dictionary:
    """One SAE of a ladder: dictionaries read at the same hook of the same model."""

    name: str  # the SAE id, or ``w{width}-s{seed}`` for a ladder SAE trained here
    path: str  # its sae-lens folder
    seed: int = 0  # training seed (0 for imported SAEs)


def compare_ladder(dictionaries: Sequence[Dictionary], scored: str, *,
                   config: McsConfig = McsConfig()) -> dict[str, Any]:
    """The post's comparison over a ladder of dictionaries at one hook.

    Every dictionary but the widest is compared with the widest (the reference; ties broken
    by name): MCS, the high/low split and the EMD to random Gaussian dictionaries of the same
    shapes (``config.random_seeds``). The ``scored`` dictionary is also compared with the
    second widest other one, for the scatter. Returns ``ladder`` (``ladder_table`` plus name
    and reference), ``emd`` (pairwise EMDs between every learned and random distribution),
    ``features`` (the scored SAE's ``feature_id, mcs, match_id, mcs_second`` against the
    widest and second widest other dictionaries, named ``first`` and ``second``), and the
    samples the plots need.
    """
    if len(dictionaries) < 2:
        raise InputError("config mcs", "widths", f"{len(dictionaries)} dictionary in the ladder",
                         "list at least one width besides the scored SAE's, or a second SAE "
                         "at the same hook")
    weights = {d.name: decoder_directions(d.path) for d in dictionaries}
    order = sorted(dictionaries, key=lambda d: (-weights[d.name].shape[0], d.name))
    reference = order[0]
    ref_w = weights[reference.name]
    d_in = ref_w.shape[1]
    kwargs = {"chunk_rows": config.chunk_rows, "device": config.device,
              "block_bytes": config.block_bytes}
    mcs, entries, baselines, distributions = {}, [], {}, {}
    for d in order[1:]:
        w = weights[d.name]
        if w.shape[1] != d_in:
            raise InputError(d.path, "d_in", f"{w.shape[1]} != {d_in} of {reference.path}",
                             "put SAEs of one hook of one model in a ladder")
        mcs[d.name], match = max_cosine_similarity(w, ref_w, **kwargs)
        if d.name == scored:
            scored_match = match
        width = w.shape[0]
        if width not in baselines:
            baselines[width] = random_baseline_mcs(width, ref_w.shape[0], d_in,
                                                   config.random_seeds, **kwargs)
            for k, sample in enumerate(baselines[width]):
                distributions[f"random {width} s{config.random_seeds[k]}"] = sample
        entries.append((width, d.seed, mcs[d.name]))
        distributions[d.name] = mcs[d.name]
    ladder = pl.concat([
        ladder_table([entry], random_baselines=baselines, config=config).with_columns(
            name=pl.lit(d.name), reference=pl.lit(reference.name))
        for d, entry in zip(order[1:], entries)
    ]).sort("width", "seed", "name")
    below = config.threshold if config.emd_low_only else None
    out = {"ladder": ladder, "emd": emd_matrix(distributions, below=below),
           "reference": reference.name, "reference_width": ref_w.shape[0], "d_in": d_in,
           "random": baselines, "mcs": mcs}
    # The scored SAE against the widest and second widest other dictionaries (for the widest
    # SAE itself, that is the next ones down: "found again" in a smaller dictionary).
    others = [d for d in order if d.name != scored]
    first, second = others[0], (others[1] if len(others) > 1 else None)
    if scored == reference.name:
        mcs_first, match = max_cosine_similarity(weights[scored], weights[first.name], **kwargs)
    else:
        mcs_first, match = mcs[scored], scored_match
    mcs_second = (max_cosine_similarity(weights[scored], weights[second.name], **kwargs)[0]
                  if second is not None else np.full(mcs_first.size, np.nan, np.float32))
    out["features"] = pl.DataFrame({
        "feature_id": np.arange(mcs_first.size, dtype=np.uint32), "mcs": mcs_first,
        "match_id": match.astype(np.uint32), "mcs_second": mcs_second})
    out["first"], out["second"] = first.name, None if second is None else second.name
    return out
