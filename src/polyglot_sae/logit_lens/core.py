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

Enrichment (the note's token-set enrichment, "borrowed from systems biology", i.e. gene-set
enrichment; the note does not give its statistic). For feature i and token set S, the one-sided
Mann-Whitney U test of the set's weights against the rest of the universe: U1 = sum of the set
tokens' ranks (average ranks for ties) - n1 (n1 + 1) / 2, n1 = |S|, n2 = the rest. Effect size
``auc = U1 / (n1 n2)``: the chance that a random set token outranks a random other token (ties
count half). Two nulls, each with BH q-values (``null.bh_qvalues``) per set over the features
(``EnrichmentConfig.bh_family = "set"``) or over every (feature, set) test ("all"):

- token null (``p_greater``, ``p_less``): the feature's weights do not depend on set membership,
  i.e. S is as good as a random subset of the universe of the same size. Normal approximation
  with tie and continuity correction, exactly ``scipy.stats.mannwhitneyu(method="asymptotic")``:
  ``p_greater`` from U1, ``p_less`` from U2 = n1 n2 - U1 (two-sided: ``min(1, 2 min(...))``).
  This null is too easy for structured sets in a real vocabulary: the unembedding clusters
  tokens by form, so *any* direction separates capitalised from other tokens a little, and with
  256k tokens a little is enough. 48 random directions through Gemma-3-270M: 83-98% of them
  have q < 0.05 one way or the other for each of the six larger regex sets (44-58% for ñ and
  digits); under the direction null below, none does.
- direction null (``p_dir_greater``, ``p_dir_less``): the feature's AUC for S is no further from
  0.5 than that of a random direction in the residual stream. ``null_directions`` isotropic
  Gaussian directions (seeded) go through the same lens; their AUCs per set give a mean and sd,
  and ``z_dir = (auc - mean) / sd`` is referred to a normal (``p_dir_greater = P(Z >= z)``). This
  asks whether the feature is special about S, which is what a feature label needs; it is the
  default in ``join_bilingual``. The normal fit is an assumption (AUCs of random directions are
  smooth functions of a Gaussian vector); ``auc_null_mean`` and ``auc_null_sd`` are in the table.
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
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from jaxtyping import Bool, Float
from scipy.special import ndtr

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.errors import InputError
from polyglot_sae.score.null import bh_qvalues
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
PROMOTES = ("es", "en", "both", "neither")


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


@dataclass(frozen=True)
class EnrichmentConfig:
    """The Mann-Whitney enrichment test (module docstring: Enrichment)."""

    # subtract 0.5 from |U - mean| as scipy's use_continuity=True does
    continuity: bool = True
    # BH family: "set" adjusts each set over the features, "all" over every (feature, set)
    bh_family: Literal["set", "all"] = "set"
    # sets with fewer tokens in the universe are not tested (listed in the provenance as
    # skipped): a handful of ranks says little and the normal approximation needs more
    min_set_size: int = 5
    # random residual directions for the direction null (0: token null only); each costs as
    # much as a feature, and the sd of their AUCs is known to ~1/sqrt(2n) (4% at 256)
    null_directions: int = 256
    # seed of the random directions
    seed: int = 0


@dataclass(frozen=True)
class JoinConfig:
    """Joining the enrichment with the bilingual scores."""

    # a feature promotes a set when its q (of the chosen null, below) < alpha ...
    alpha: float = 0.05
    # ... and auc > min_auc (0.5: the set merely ranks above the rest)
    min_auc: float = 0.5
    # the language sets' names in the enrichment table (token_sets.LanguageSetConfig.prefix)
    es_set: str = "lang_es"
    en_set: str = "lang_en"
    # significant-bilingual features: alive with scores.q_value < bilingual_alpha ...
    bilingual_alpha: float = 0.05
    # ... or, when set, alive with rank < bilingual_top_k (for scores without a null)
    bilingual_top_k: int | None = None
    # which enrichment null decides "promotes" (module docstring: Enrichment)
    null: Literal["direction", "token"] = "direction"


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

def rank_sums(values: Float[torch.Tensor, "c n"],
              masks: Float[torch.Tensor, "n s"]) -> tuple[Float[np.ndarray, "c s"], Float[np.ndarray, " c"]]:
    """Per row: the sum of each set's average ranks (1-based, ties averaged) and the tie term
    sum(t^3 - t) over tie groups. ``masks`` are float64 0/1 columns."""
    c, n = values.shape
    sorted_vals, order = torch.sort(values, dim=1)
    tied_rows = (sorted_vals[:, 1:] == sorted_vals[:, :-1]).any(1).nonzero().flatten().tolist()
    base = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
    ranks_sorted = base.expand(c, n).clone() if tied_rows else base.expand(c, n)
    ties = np.zeros(c)
    for row in tied_rows:  # rare for continuous weights: handled one row at a time
        v = sorted_vals[row]
        starts = torch.cat([torch.zeros(1, dtype=torch.long, device=v.device),
                            (v[1:] != v[:-1]).nonzero().flatten() + 1])
        lengths = torch.diff(starts, append=torch.tensor([n], device=v.device))
        avg = starts.to(torch.float64) + (lengths.to(torch.float64) + 1) / 2
        ranks_sorted[row] = torch.repeat_interleave(avg, lengths)
        t = lengths.to(torch.float64)
        ties[row] = float((t**3 - t).sum())
    del sorted_vals
    ranks = torch.empty((c, n), dtype=torch.float64, device=values.device)
    ranks.scatter_(1, order, ranks_sorted)
    del order
    return (ranks @ masks).cpu().numpy(), ties


def mann_whitney_p(u1: np.ndarray, n1: np.ndarray | float, n2: np.ndarray | float,
                   tie_term: np.ndarray, *, continuity: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(p_greater, p_less): scipy.stats.mannwhitneyu's asymptotic p-values (module docstring).
    ``tie_term`` broadcasts against u1 (one value per row of values)."""
    n1, n2 = np.asarray(n1, dtype=np.float64), np.asarray(n2, dtype=np.float64)
    n = n1 + n2
    mu = n1 * n2 / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        u2 = n1 * n2 - u1
        shift = 0.5 if continuity else 0.0
        p_greater = np.clip(ndtr(-((u1 - mu - shift) / s)), 0.0, 1.0)
        p_less = np.clip(ndtr(-((u2 - mu - shift) / s)), 0.0, 1.0)
    # s = 0: every weight tied (a constant feature), so there is nothing to test.
    return np.where(s > 0, p_greater, np.nan), np.where(s > 0, p_less, np.nan)


# --- the analysis ----------------------------------------------------------------------------

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

    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "mean", "std", "skewness", "kurtosis", "bimodality", "top_ids", "top_values",
        "bottom_ids", "bottom_values", "rank_sums", "ties")}
    for _, values in iter_logit_chunks(lens, W_dec, block, step, keep):
        for name, column in moments(values).items():
            parts[name].append(column)
        top = torch.topk(values, top_k, dim=1)
        bottom = torch.topk(values, top_k, dim=1, largest=False)
        parts["top_ids"].append(keep_ids[top.indices.cpu().numpy()])
        parts["top_values"].append(top.values.cpu().numpy())
        parts["bottom_ids"].append(keep_ids[bottom.indices.cpu().numpy()])
        parts["bottom_values"].append(bottom.values.cpu().numpy())
        if masks is not None:
            sums, ties = rank_sums(values, masks)
            parts["rank_sums"].append(sums)
            parts["ties"].append(ties)
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

    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    stats = pl.DataFrame({
        "feature_id": np.arange(d_sae, dtype=np.uint32),
        **{k: cat[k] for k in ("mean", "std", "skewness", "kurtosis", "bimodality")},
        "top_ids": pl.Series(cat["top_ids"].astype(np.uint32).reshape(d_sae, top_k).tolist(),
                             dtype=pl.List(pl.UInt32)),
        "top_values": pl.Series(cat["top_values"].reshape(d_sae, top_k).tolist(),
                                dtype=pl.List(pl.Float32)),
        "bottom_ids": pl.Series(cat["bottom_ids"].astype(np.uint32).reshape(d_sae, top_k).tolist(),
                                dtype=pl.List(pl.UInt32)),
        "bottom_values": pl.Series(cat["bottom_values"].reshape(d_sae, top_k).tolist(),
                                   dtype=pl.List(pl.Float32)),
    })
    stats = stats.insert_column(6, classify(stats, class_config))

    enrichment = None
    if token_sets is not None and masks is None:  # every set skipped: an empty, typed table
        enrichment = _enrichment_table(np.zeros((d_sae, 0)), np.zeros(d_sae), np.zeros(0),
                                       float(n_tokens), (), enrichment_config,
                                       np.zeros((enrichment_config.null_directions, 0))
                                       if enrichment_config.null_directions else None)
    if masks is not None:
        enrichment = _enrichment_table(cat["rank_sums"].reshape(d_sae, -1), cat["ties"], n1,
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


def null_directions(d_model: int, n: int, seed: int) -> Float[torch.Tensor, "n d_model"]:
    """The direction null's random residual directions: isotropic Gaussian, unit norm (the norm
    does not change an AUC), reproducible from the seed."""
    directions = torch.randn(n, d_model, generator=torch.Generator().manual_seed(seed))
    return directions / directions.norm(dim=1, keepdim=True)


def _enrichment_table(sums: np.ndarray, ties: np.ndarray, n1: np.ndarray, n: float,
                      names: tuple[str, ...], config: EnrichmentConfig,
                      null_auc: np.ndarray | None) -> pl.DataFrame:
    d_sae, n_sets = sums.shape
    n2 = n - n1
    u1 = sums - n1 * (n1 + 1) / 2
    auc = u1 / (n1 * n2)
    p_greater, p_less = mann_whitney_p(u1, n1[None, :], n2[None, :], ties[:, None],
                                       continuity=config.continuity)
    columns = {
        "feature_id": np.repeat(np.arange(d_sae, dtype=np.uint32), n_sets),
        "set_name": pl.Series(np.tile(np.array(names, dtype=object), d_sae).tolist(), dtype=pl.String),
        "n_set": np.tile(n1, d_sae).astype(np.uint32),
        "n_rest": np.tile(n2, d_sae).astype(np.uint32),
        "u": u1.ravel(),
        "auc": auc.ravel(),
        "p_greater": p_greater.ravel(), "q_greater": _bh(p_greater, config.bh_family).ravel(),
        "p_less": p_less.ravel(), "q_less": _bh(p_less, config.bh_family).ravel(),
    }
    if null_auc is not None:
        mean, sd = null_auc.mean(axis=0), null_auc.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (auc - mean) / sd
        p_up, p_down = ndtr(-z), ndtr(z)
        columns |= {
            "auc_null_mean": np.tile(mean, d_sae), "auc_null_sd": np.tile(sd, d_sae),
            "z_dir": z.ravel(),
            "p_dir_greater": p_up.ravel(), "q_dir_greater": _bh(p_up, config.bh_family).ravel(),
            "p_dir_less": p_down.ravel(), "q_dir_less": _bh(p_down, config.bh_family).ravel(),
        }
    pvalues = [c for c in columns if c.startswith(("p_", "q_")) or c == "z_dir"]
    return pl.DataFrame(columns).with_columns(pl.col(c).fill_nan(None) for c in pvalues)


def _bh(p: np.ndarray, family: str) -> np.ndarray:
    """BH over the finite p-values (constant features have none), per set column or all."""
    q = np.full_like(p, np.nan)
    groups = [(slice(None), j) for j in range(p.shape[1])] if family == "set" else [(slice(None),
                                                                                     slice(None))]
    for index in groups:
        block = p[index]
        ok = np.isfinite(block)
        out = np.full(block.shape, np.nan)
        out[ok] = bh_qvalues(block[ok])
        q[index] = out
    return q


# --- join with the bilingual scores ----------------------------------------------------------

def join_bilingual(scores: pl.DataFrame, enrichment: pl.DataFrame,
                   config: JoinConfig = JoinConfig()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per feature, whether its logit weights promote the Spanish set, the English set, both or
    neither, next to whether the scores call it bilingual; and the crosstab of the two.

    per_feature: ``feature_id:u32, group ("bilingual", "other" or "dead"), promotes_es,
    promotes_en: bool, promotes (enum es/en/both/neither), auc_es, auc_en, q_es, q_en`` (q of
    ``config.null``).
    crosstab: ``group, promotes, n_features, share`` over the alive groups (share within the
    group), every (group, promotes) cell present."""
    need = ["feature_id", "dead"] + (["rank"] if config.bilingual_top_k is not None else ["q_value"])
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise InputError("scores", ", ".join(missing), "missing column(s)",
                         "score with the permutation null (q_value), or set bilingual_top_k")
    q_column = "q_dir_greater" if config.null == "direction" else "q_greater"
    if q_column not in enrichment.columns:
        raise InputError("enrichment", q_column, f"missing (join null {config.null!r})",
                         "run the analysis with EnrichmentConfig.null_directions > 0, or join "
                         "with JoinConfig(null='token')")
    for name in (config.es_set, config.en_set):
        if name not in set(enrichment["set_name"].unique().to_list()):
            raise InputError("enrichment", "set_name", f"no rows for set {name!r}",
                             "build the language sets (token_sets.language_sets) before the test")
    if config.bilingual_top_k is not None:
        bilingual = pl.col("rank").is_not_null() & (pl.col("rank") < config.bilingual_top_k)
    else:
        bilingual = pl.col("q_value").is_not_null() & (pl.col("q_value") < config.bilingual_alpha)
    groups = scores.select(
        pl.col("feature_id").cast(pl.UInt32),
        pl.when(pl.col("dead")).then(pl.lit("dead")).when(bilingual).then(pl.lit("bilingual"))
        .otherwise(pl.lit("other")).alias("group"))

    def side(name: str, tag: str) -> pl.DataFrame:
        return enrichment.filter(pl.col("set_name") == name).select(
            pl.col("feature_id").cast(pl.UInt32), pl.col("auc").alias(f"auc_{tag}"),
            pl.col(q_column).alias(f"q_{tag}"),
            ((pl.col(q_column) < config.alpha) & (pl.col("auc") > config.min_auc))
            .fill_null(False).alias(f"promotes_{tag}"))

    per_feature = groups.join(side(config.es_set, "es"), on="feature_id", how="left").join(
        side(config.en_set, "en"), on="feature_id", how="left").with_columns(
        pl.col("promotes_es", "promotes_en").fill_null(False))
    per_feature = per_feature.with_columns(
        pl.when(pl.col("promotes_es") & pl.col("promotes_en")).then(pl.lit("both"))
        .when(pl.col("promotes_es")).then(pl.lit("es"))
        .when(pl.col("promotes_en")).then(pl.lit("en"))
        .otherwise(pl.lit("neither")).cast(pl.Enum(PROMOTES)).alias("promotes"),
    ).select("feature_id", "group", "promotes_es", "promotes_en", "promotes", "auc_es", "auc_en",
             "q_es", "q_en").sort("feature_id")

    cells = pl.DataFrame({"group": ["bilingual"] * 4 + ["other"] * 4,
                          "promotes": pl.Series(list(PROMOTES) * 2, dtype=pl.Enum(PROMOTES))})
    counts = per_feature.filter(pl.col("group") != "dead").group_by("group", "promotes").agg(
        pl.len().cast(pl.UInt32).alias("n_features"))
    crosstab = cells.join(counts, on=["group", "promotes"], how="left").with_columns(
        pl.col("n_features").fill_null(0)).with_columns(
        (pl.col("n_features") / pl.col("n_features").sum().over("group")).fill_nan(None)
        .alias("share")).sort("group", "promotes")
    return per_feature, crosstab


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
