"""Logit lens of SAE features: the logit weight distribution of every feature, its moments and
class, and token-set enrichment (after J. Bloom, "Understanding SAE Features with the Logit
Lens", 2024; the seed note in shared/seeds/logit-lens-sae-features.txt).

What is computed. Feature i's *logit weights* are the direct effect of its decoder direction on
the logits, over the whole vocabulary::

    w_i = W_U^T (g * P W_dec[i])          one value per token (length d_vocab)

where g is the final norm's effective weight and P the norm's centering (LayerNorm only; P = I
for RMSNorm). Our models are loaded with ``from_pretrained_no_processing`` (no fold_ln, no
centering of W_U), so the unembedding the model actually applies to a residual direction is
``ln_final``'s scale and then W_U, and the post's ``W_U W_dec[i]`` (computed by the post on a
TransformerLens-processed GPT-2, whose ln_final weight is folded into W_U) must fold g in
here. TransformerLens' Gemma conversion already stores Gemma's ``(1 + weight)`` in
``ln_final.w`` (``state_dict["ln_final.w"] = norm.weight + 1``, and its RMSNorm multiplies by
``w`` as is), so g = ``ln_final.w`` exactly, with no further +1. The identity behind it: for a
residual vector x, ``unembed(ln_final(x)) = W_eff^T (x / s(x)) + b_eff`` with
``W_eff = P diag(g) W_U``, s(x) the norm's per-vector scale (RMS of x, or of the centred x for
LayerNorm, eps included) and ``b_eff = W_U^T b_ln + b_U``. The positive per-position factor
1/s(x) and the constant b_eff do not change a feature's distribution's shape, so w_i is the
post's quantity up to units. Supported final norms: LN, LNPre, RMS, RMSPre (TransformerLens
classes) and none; anything else raises. Models with a logit soft-cap (Gemma-2: 30) apply a
monotone tanh after this; w_i is the pre-cap logit, recorded in the provenance.

Statistics per feature, over the universe of tokens (``token_sets.Vocabulary``; the whole
vocabulary when no sets are given): mean, population std (ddof 0), skewness ``m3 / m2^1.5`` and
excess kurtosis ``m4 / m2^2 - 3`` from central moments ``m_k`` (= ``scipy.stats.skew`` and
``scipy.stats.kurtosis(fisher=True)`` with ``bias=True``), in float64 from float32 logits; the
bimodality coefficient ``(skew^2 + 1) / (kurtosis + 3)`` (Sarle's, large-n form); the top-k and
bottom-k tokens. A feature whose weights are all equal (a zero decoder row) gets NaN moments and
class "flat". The mean depends on W_U's average over the vocabulary, which softmax ignores; no
class uses it.

Classes. The note names three kinds of feature and gives no numbers: *prediction* features
"promote tokens in classes of varying sizes", *suppression* features "act like partition features
but are more asymmetric", and *partition* features "(somewhat) promote half the tokens and
suppress the other half". We read a small promoted class as a heavy right tail and a suppressed
one as a heavy left tail, and half-and-half as two modes::

    flat         the weights are constant (std 0)
    prediction   kurtosis >= kurtosis_min and skew >=  skew_min
    suppression  kurtosis >= kurtosis_min and skew <= -skew_min
    partition    otherwise, bimodality coefficient > bimodality_min (5/9: a uniform's value)
    other        everything else (near-normal: most random directions)

Heavy tails are tested first because a skewed heavy-tailed distribution also has a large
bimodality coefficient. The thresholds (``ClassConfig``) are ours: 64 random directions through
Gemma-3-270M's unembedding give excess kurtosis -0.1..0.35 and |skew| < 0.14, so the defaults
sit well clear of chance.

Enrichment: ``logit_lens.enrichment``; the join with the bilingual scores: ``logit_lens.join``.

Memory. Features are processed a block at a time: one matmul gives a block's [c, d_vocab]
float32 logits (4 bytes per (feature, token); the matmul streams all of W_U per block, so blocks
should be large), and the moments, top-k and rank test then walk the block a few rows at a time
with about ``STEP_BYTES_PER_ENTRY`` = 32 bytes per (feature, token) of scratch (the universe's
columns copied out (4), float64 centred values, their square and a product (24); or the sorted
values (4), the sort order (8), float64 ranks (8)). Half of ``LensConfig.chunk_mib`` (default
256 MiB) goes to the block, half to the step: for Gemma-3's 262,144 tokens that is steps of 16
features in blocks of 128. Peak = block + step (~256 MiB) + W_U (the model's own tensor, never
copied; 0.67 GB for Gemma-3-270M) + the per-feature outputs; a dense [d_sae, d_vocab] float32
matrix (2 GiB for 2,048 features, 16 GiB for GemmaScope's 16k) is never built. Measured
(``bench.logit_lens_bench``, Gemma-3-270M, 2,048 features): +0.30 GiB RSS over the loaded
model; sort's own scratch and malloc's slack come on top of the 256 MiB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from jaxtyping import Float

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.errors import InputError
from polyglot_sae.logit_lens.enrichment import (EnrichmentConfig, enrichment_table,
                                              null_directions, rank_sums)
from polyglot_sae.logit_lens.token_sets import TokenSets

PROCESSING_NO = "no_processing; ln_final weight folded by polyglot-sae"
PROCESSING_FOLDED = "TransformerLens fold_ln; ln_final weight already in W_U"
PROCESSING_NONE = "no final norm"
# Scratch bytes per (feature, token) of a step (module docstring: Memory): the universe columns
# (4) + float64 centred values, square and product (24) in the moments; sorted values (4), sort
# order (8) and float64 ranks (8) in the rank test, which runs after the moments' scratch is freed.
STEP_BYTES_PER_ENTRY = 32
BLOCK_BYTES_PER_ENTRY = 4  # a block's float32 logits
CLASSES = ("prediction", "suppression", "partition", "other", "flat")


@dataclass(frozen=True)
class LensConfig:
    """How the logit weights are computed and summarised."""

    # working memory beyond W_U: half for a block of logits, half for a step's scratch
    # (module docstring: Memory)
    chunk_mib: int = 256
    # features per block (one matmul), overriding chunk_mib (tests use it to force several)
    features_per_chunk: int | None = None
    # features per step within a block, overriding chunk_mib
    features_per_step: int | None = None
    # tokens kept per feature at each end (top_ids: most promoted, bottom_ids: most suppressed)
    top_k: int = 20


@dataclass(frozen=True)
class ClassConfig:
    """Thresholds of the class rule (module docstring: Classes); the note gives no numbers."""

    # excess kurtosis from which a tail counts as heavy (random directions: -0.1..0.35)
    kurtosis_min: float = 5.0
    # |skew| from which the heavy tail is one-sided (random directions: |skew| < 0.14)
    skew_min: float = 0.5
    # bimodality coefficient above which the weights split into two groups (5/9: uniform)
    bimodality_min: float = 5.0 / 9.0


@dataclass(frozen=True, eq=False)
class UnembedLens:
    """What the model does to a residual direction on the way to the logits (module docstring)."""

    W_U: Float[torch.Tensor, "d_model d_vocab"]  # the model's own tensor (not copied)
    gain: Float[torch.Tensor, " d_model"]  # g: the final norm's effective weight
    center: bool  # LayerNorm subtracts the mean over d_model first
    bias: Float[torch.Tensor, " d_vocab"]  # b_eff = W_U^T b_ln + b_U (not part of w_i)
    eps: float  # the norm's epsilon, inside s(x)
    norm: str  # LN, LNPre, RMS, RMSPre or none
    processing: str  # how the weights were processed (provenance)
    softcap: float | None  # the model's logit soft-cap, applied after the lens (None: none)

    @property
    def d_model(self) -> int:
        return int(self.W_U.shape[0])

    @property
    def d_vocab(self) -> int:
        return int(self.W_U.shape[1])

    def provenance(self) -> dict[str, Any]:
        return {"norm": self.norm, "processing": self.processing, "center": self.center,
                "eps": self.eps, "softcap": self.softcap, "d_model": self.d_model,
                "d_vocab": self.d_vocab,
                "gain": "ln_final.w as loaded (for Gemma, TransformerLens' conversion already "
                        "stores 1 + weight)" if self.norm in ("RMS", "LN") else "1"}


def unembed_lens(model) -> UnembedLens:
    """The lens of a HookedTransformer / HookedSAETransformer (module docstring)."""
    from transformer_lens.components import LayerNorm, LayerNormPre, RMSNorm, RMSNormPre

    W_U = model.unembed.W_U.detach()
    b_U = model.unembed.b_U.detach().to(torch.float32)
    d_model = W_U.shape[0]
    ln = getattr(model, "ln_final", None)
    eps = float(getattr(model.cfg, "eps", 0.0))
    ones = torch.ones(d_model, dtype=torch.float32, device=W_U.device)
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    softcap = float(cap) if cap is not None and cap > 0 else None
    common = {"W_U": W_U, "eps": eps, "softcap": softcap}
    if ln is None:
        return UnembedLens(gain=ones, center=False, bias=b_U, norm="none",
                           processing=PROCESSING_NONE, **common)
    if isinstance(ln, LayerNorm):
        bias = ln.b.detach().to(W_U.dtype) @ W_U + b_U
        return UnembedLens(gain=ln.w.detach().float(), center=True, bias=bias.float(), norm="LN",
                           processing=PROCESSING_NO, **common)
    if isinstance(ln, RMSNorm):
        return UnembedLens(gain=ln.w.detach().float(), center=False, bias=b_U, norm="RMS",
                           processing=PROCESSING_NO, **common)
    if isinstance(ln, LayerNormPre):
        return UnembedLens(gain=ones, center=True, bias=b_U, norm="LNPre",
                           processing=PROCESSING_FOLDED, **common)
    if isinstance(ln, RMSNormPre):
        return UnembedLens(gain=ones, center=False, bias=b_U, norm="RMSPre",
                           processing=PROCESSING_FOLDED, **common)
    raise InputError("model", "ln_final", f"final norm {type(ln).__name__} is not supported",
                     "use a model whose final norm is TransformerLens' LayerNorm(Pre), "
                     "RMSNorm(Pre) or none")


def effective_unembed(lens: UnembedLens) -> Float[torch.Tensor, "d_model d_vocab"]:
    """W_eff = P diag(g) W_U, materialised (d_model x d_vocab: for tests and small models; the
    analysis folds g and P into the decoder rows instead)."""
    M = lens.gain[:, None].to(lens.W_U.dtype) * lens.W_U
    return M - M.mean(0, keepdim=True) if lens.center else M


def normalise(lens: UnembedLens, x: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
    """x / s(x), s the final norm's per-vector scale (eps included; 1 without a norm)."""
    if lens.norm == "none":
        return x
    centred = x - x.mean(-1, keepdim=True) if lens.center else x
    return x / (centred.pow(2).mean(-1, keepdim=True) + lens.eps).sqrt()


def decoder_directions(lens: UnembedLens,
                       W_dec: Float[torch.Tensor, "n d_model"]) -> Float[torch.Tensor, "n d_model"]:
    """g * P W_dec[i]: the rows that, times W_U, give the logit weights."""
    d = W_dec.to(device=lens.W_U.device, dtype=torch.float32)
    if lens.center:
        d = d - d.mean(-1, keepdim=True)
    return d * lens.gain


def logit_weights(lens: UnembedLens,
                  W_dec: Float[torch.Tensor, "n d_model"]) -> Float[torch.Tensor, "n d_vocab"]:
    """The logit weights of the given decoder rows, dense (n x d_vocab float32: pass few rows)."""
    _check_width(lens, W_dec)
    with torch.no_grad():
        return (decoder_directions(lens, W_dec).to(lens.W_U.dtype) @ lens.W_U).float()


def _check_width(lens: UnembedLens, W_dec: torch.Tensor) -> None:
    if W_dec.ndim != 2 or W_dec.shape[1] != lens.d_model:
        raise InputError("SAE", "W_dec", f"shape {tuple(W_dec.shape)} but the residual stream has "
                         f"width {lens.d_model}",
                         "use an SAE that writes to the residual stream (d_in = d_model)")


def chunk_sizes(config: LensConfig, n_tokens: int) -> tuple[int, int]:
    """(features per block, features per step): module docstring, Memory."""
    half = config.chunk_mib * 2**20 // 2
    n_tokens = max(n_tokens, 1)
    step = config.features_per_step or half // (n_tokens * STEP_BYTES_PER_ENTRY)
    block = config.features_per_chunk or half // (n_tokens * BLOCK_BYTES_PER_ENTRY)
    step = max(1, min(int(step), max(1, int(block))))
    # A whole number of steps per block, so no step is a sliver.
    block = max(step, int(block) // step * step) if config.features_per_chunk is None else int(block)
    return max(1, block), step


def iter_logit_chunks(lens: UnembedLens, W_dec: Float[torch.Tensor, "d_sae d_model"], block: int,
                      step: int | None = None, keep: torch.Tensor | None = None,
                      ) -> Iterator[tuple[int, Float[torch.Tensor, "c n_tokens"]]]:
    """(first feature, [c, n_tokens] float32 logit weights) per step of features, computed a
    block at a time (module docstring: Memory); ``keep`` (token ids) selects the universe's
    columns."""
    _check_width(lens, W_dec)
    step = step or block
    with torch.no_grad():
        for start in range(0, W_dec.shape[0], block):
            logits = logit_weights(lens, W_dec[start : start + block])
            for offset in range(0, logits.shape[0], step):
                rows = logits[offset : offset + step]
                yield start + offset, (rows[:, keep] if keep is not None else rows)
            # The last step's view would keep this block alive while the next one is computed
            # (the consumer must drop its own reference too).
            del logits, rows


# --- statistics ------------------------------------------------------------------------------

def moments(values: Float[torch.Tensor, "c n"]) -> dict[str, Float[np.ndarray, " c"]]:
    """mean, std, skewness, kurtosis (excess), bimodality per row, in float64 (module docstring);
    NaN moments where a row is constant."""
    x = values.to(torch.float64)
    if x is values:  # float64 input: centre a copy, not the caller's tensor
        x = x.clone()
    mean = x.mean(1, keepdim=True)
    x -= mean
    sq = x.square()
    m2 = sq.mean(1)
    m3 = (sq * x).mean(1)
    del x
    m4 = sq.square_().mean(1)
    del sq
    mean, m2, m3, m4 = (t.reshape(-1).cpu().numpy() for t in (mean, m2, m3, m4))
    # Float rounding leaves a tiny m2 on a constant row; scipy calls such a row constant too.
    flat = m2 <= (np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1e-300)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(flat, np.nan, m3 / m2**1.5)
        kurt = np.where(flat, np.nan, m4 / m2**2 - 3.0)
    return {"mean": mean, "std": np.sqrt(m2), "skewness": skew, "kurtosis": kurt,
            "bimodality": (skew**2 + 1.0) / (kurt + 3.0)}


def classify(stats: pl.DataFrame, config: ClassConfig = ClassConfig()) -> pl.Series:
    """The class of every row of a stats table (module docstring: Classes)."""
    skew, kurt, bc = (pl.col(c) for c in ("skewness", "kurtosis", "bimodality"))
    heavy = kurt >= config.kurtosis_min
    expr = (pl.when(kurt.is_nan() | kurt.is_null()).then(pl.lit("flat"))
            .when(heavy & (skew >= config.skew_min)).then(pl.lit("prediction"))
            .when(heavy & (skew <= -config.skew_min)).then(pl.lit("suppression"))
            .when(bc > config.bimodality_min).then(pl.lit("partition"))
            .otherwise(pl.lit("other")))
    return stats.select(expr.cast(pl.Enum(CLASSES)).alias("class")).to_series()


# --- Mann-Whitney U from ranks ---------------------------------------------------------------

@dataclass(frozen=True)
class LogitLensResult:
    stats: pl.DataFrame  # one row per feature (stats_table's schema)
    enrichment: pl.DataFrame | None  # one row per (feature, set); None without sets
    provenance: dict[str, Any]


def analyse(lens: UnembedLens, W_dec: Float[torch.Tensor, "d_sae d_model"], *,
            token_sets: TokenSets | None = None, lens_config: LensConfig = LensConfig(),
            class_config: ClassConfig = ClassConfig(),
            enrichment_config: EnrichmentConfig = EnrichmentConfig()) -> LogitLensResult:
    """Statistics, classes and (with ``token_sets``) enrichment of every feature, in one pass
    over chunks of features (module docstring: Memory).

    stats: ``feature_id:u32, mean, std, skewness, kurtosis, bimodality:f64, class:enum,
    top_ids, bottom_ids: list[u32], top_values, bottom_values: list[f32]`` (top: largest first;
    bottom: smallest first). enrichment: ``feature_id:u32, set_name:str, n_set, n_rest:u32, u,
    auc, p_greater, q_greater, p_less, q_less`` and, with null directions, ``auc_null_mean,
    auc_null_sd, z_dir, p_dir_greater, q_dir_greater, p_dir_less, q_dir_less`` (all f64),
    sorted by feature then set order; sets smaller than ``min_set_size`` (or the whole
    universe) are left out and listed in the provenance under ``skipped_sets``."""
    d_sae = int(W_dec.shape[0])
    _check_width(lens, W_dec)
    keep_ids = np.arange(lens.d_vocab)
    if token_sets is not None:
        if token_sets.universe.size != lens.d_vocab:
            raise InputError("token sets", "vocabulary", f"{token_sets.universe.size} tokens but "
                             f"the unembedding has {lens.d_vocab}", "build the sets from this model")
        keep_ids = np.flatnonzero(token_sets.universe)
    n_tokens = keep_ids.size
    keep = None if n_tokens == lens.d_vocab else torch.from_numpy(keep_ids).to(lens.W_U.device)
    top_k = min(lens_config.top_k, n_tokens)
    block, step = chunk_sizes(lens_config, n_tokens)

    masks = n1 = None
    names: tuple[str, ...] = ()
    skipped: dict[str, int] = {}
    if token_sets is not None and token_sets.names:
        sub = token_sets.masks[:, keep_ids]
        sizes = sub.sum(axis=1)
        # A set too small to rank (or the whole universe) has no test; it is reported in the
        # provenance instead of failing the run, since regex sets can be empty on a small vocab.
        ok = (sizes >= enrichment_config.min_set_size) & (sizes < n_tokens)
        skipped = {name: int(k) for name, k, good in zip(token_sets.names, sizes, ok) if not good}
        names = tuple(name for name, good in zip(token_sets.names, ok) if good)
        if names:
            n1 = sizes[ok].astype(np.float64)
            masks = torch.from_numpy(sub[ok].T.astype(np.float64)).to(lens.W_U.device)

    # Outputs filled in place, allocated once: a step's small arrays kept in lists would be
    # placed between the freed blocks of logits and scratch, so that glibc could no longer
    # reuse those holes for the next block; the heap then grew by ~3 bytes per (feature,
    # token), without bound: 6.9 GB at 262,144 features x 8,192 tokens (bench.width_bench
    # logit_lens), 0.05 GB with these arrays.
    cols = {k: np.empty(d_sae) for k in ("mean", "std", "skewness", "kurtosis", "bimodality")}
    ends = {k: np.empty((d_sae, top_k), dtype=np.uint32 if k.endswith("ids") else np.float32)
            for k in ("top_ids", "top_values", "bottom_ids", "bottom_values")}
    sums_all = np.empty((d_sae, len(names)))
    ties_all = np.empty(d_sae)
    for start, values in iter_logit_chunks(lens, W_dec, block, step, keep):
        rows = slice(start, start + values.shape[0])
        for name, column in moments(values).items():
            cols[name][rows] = column
        for end, largest in (("top", True), ("bottom", False)):
            found = torch.topk(values, top_k, dim=1, largest=largest)
            ends[f"{end}_ids"][rows] = keep_ids[found.indices.cpu().numpy()]
            ends[f"{end}_values"][rows] = found.values.cpu().numpy()
            del found
        if masks is not None:
            sums_all[rows], ties_all[rows] = rank_sums(values, masks)
        del values
    null_auc = None
    if masks is not None and enrichment_config.null_directions > 0:
        directions = null_directions(lens.d_model, enrichment_config.null_directions,
                                     enrichment_config.seed)
        null_sums = []
        for _, values in iter_logit_chunks(lens, directions, block, step, keep):
            null_sums.append(rank_sums(values, masks)[0])
            del values
        u = np.concatenate(null_sums) - n1 * (n1 + 1) / 2
        null_auc = u / (n1 * (n_tokens - n1))

    stats = pl.DataFrame({"feature_id": np.arange(d_sae, dtype=np.uint32), **cols,
                          **{k: _list_column(v) for k, v in ends.items()}})
    stats = stats.insert_column(6, classify(stats, class_config))

    enrichment = None
    if token_sets is not None and masks is None:  # every set skipped: an empty, typed table
        enrichment = enrichment_table(np.zeros((d_sae, 0)), np.zeros(d_sae), np.zeros(0),
                                       float(n_tokens), (), enrichment_config,
                                       np.zeros((enrichment_config.null_directions, 0))
                                       if enrichment_config.null_directions else None)
    if masks is not None:
        enrichment = enrichment_table(sums_all, ties_all, n1,
                                       float(n_tokens), names, enrichment_config, null_auc)
    provenance = {
        "analysis": "logit_lens", "lens": lens.provenance(), "d_sae": d_sae,
        "n_tokens": int(n_tokens), "features_per_block": block, "features_per_step": step,
        "lens_config": asdict(lens_config), "class_config": asdict(class_config),
        "enrichment_config": asdict(enrichment_config),
        "statistics": "population moments over the universe tokens; skew = m3/m2^1.5, "
                      "kurtosis = m4/m2^2 - 3 (scipy bias=True, fisher=True)",
        "test": "one-sided Mann-Whitney U, normal approximation with tie and continuity "
                "correction (scipy method='asymptotic'); direction null: z of the AUC against "
                f"{enrichment_config.null_directions} random residual directions; BH per "
                + enrichment_config.bh_family,
        "token_sets": (dict(token_sets.definitions) if token_sets is not None else {}),
        "skipped_sets": {name: f"{k} tokens in the universe (min_set_size "
                                f"{enrichment_config.min_set_size}, universe {n_tokens})"
                         for name, k in skipped.items()},
    }
    return LogitLensResult(stats, enrichment, provenance)


def _list_column(rows: np.ndarray) -> pl.Series:
    """A (features x k) array as a list column, without a Python object per entry (at 1M
    features, 4 columns of 20 would be 84 M of them)."""
    inner = pl.Series(rows.reshape(-1))
    if rows.shape[1] == 0:  # polars cannot reshape to width 0
        return pl.Series([[]] * rows.shape[0], dtype=pl.List(inner.dtype))
    return inner.reshape(rows.shape).cast(pl.List(inner.dtype))


def write_result(result: LogitLensResult, stats_path: str | Path,
                 enrichment_path: str | Path | None = None, **provenance: Any) -> None:
    """The stats (and enrichment) tables as Parquet, with the analysis' provenance plus
    ``provenance`` (model, SAE, hook ...) in the file metadata."""
    meta = {**result.provenance, **provenance}
    write_parquet(result.stats, stats_path, meta)
    if enrichment_path is not None:
        if result.enrichment is None:
            raise InputError("logit lens", "enrichment", "no token sets were given",
                             "pass token_sets to analyse()")
        write_parquet(result.enrichment, enrichment_path, meta)
