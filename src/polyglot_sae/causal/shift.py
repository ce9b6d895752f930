"""How far an ablation moves the next-token distribution: KL(clean || ablated) and the change of
the observed token's cross-entropy, from final-residual rows, without a vocabulary-sized tensor
per ablated row.

With logits l = W_U^T norm(h) (+ b_U, which cancels; Gemma-3 has no soft-cap), the ablated row's
logit change is dl = W_U^T d, d = norm(h') - norm(h). Let T be the clean distribution's
``top_k`` most likely tokens, of mass p(T). By the chain rule of KL over the partition
{T, rest},

    KL(p || q) = KL over the two blocks + p(T) KL(p|T || q|T) + p(rest) KL(p|rest || q|rest)
              >= p(T) KL(p|T || q|T),

and the right side needs the logits on T only (q|T is a softmax of l + dl over T). That is the
statistic: a lower bound of the exact KL, exact when the ablation leaves the tail's share and
shape as they were. The cross-entropy change of the observed token y is computed under the same
assumption (the normaliser moves as T's): dCE = log E_{p|T}[exp(dl)] - dl_y. ``top_k = 0``
computes both exactly over the whole vocabulary instead (the reference; about 2x the cost of
the approximation at Gemma-3's 262,144 tokens, measured in docs/benchmarks.md). Sums are
float64 logsumexps of log-probabilities (no cancellation when the answer's mass moves away); a
row equal to its clean row gives exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

# Clean rows per vocabulary-sized block ([BLOCK, d_vocab] float32: 512 MiB at 262k). The
# matmul against the unembedding runs at ~100 GFLOP/s with 256 rows against ~54 with 64 (2-core
# AVX2, float32, into a reused block), and a clean row's whole softmax takes 3.5-5.0 ms with 512
# rows against 4.0-5.3 with 256 (interleaved repeats): the unembedding is read once per block.
BLOCK = 512

# Ablated rows per part of `shifts`: its [rows, top_k] float64 temporaries stay ~16 MiB each.
SHIFT_ROWS = 1024


def final_norm(model, resid: Float[Tensor, "rows d_model"]) -> Float[Tensor, "rows d_model"]:
    """The final norm before the unembedding (none for a model without one)."""
    return model.ln_final(resid[None])[0] if model.cfg.normalization_type is not None else resid


class Unembedding:
    """The model's unembedding twice: W_U [d_model, vocab] for the full logits, and its
    transpose made contiguous [vocab, d_model], so that the columns of a token set are gathered
    as contiguous rows (a column gather from W_U strides over the whole matrix, ~100x slower).
    Built once per run: the copy is d_vocab x d_model floats (671 MB for Gemma-3-270M), and
    the logits' block is BLOCK x d_vocab float32 (512 MiB)."""

    def __init__(self, model) -> None:
        cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
        if cap is not None and cap > 0:
            raise ValueError("the logit shift is linear only without a logit soft-cap; this "
                             f"model caps logits at {cap}")
        self.W_U, self.b_U = model.W_U, model.b_U
        self.rows = model.W_U.T.contiguous()
        self._block: Tensor | None = None

    def logits(self, normed: Float[Tensor, "rows d_model"]) -> Float[Tensor, "rows vocab"]:
        """float32 logits of at most BLOCK normed rows, in one block reused across calls (the
        caller is done with a block before the next call)."""
        if self._block is None:
            self._block = torch.empty(BLOCK, self.rows.shape[0], dtype=torch.float32,
                                      device=self.rows.device)
        out = self._block[:normed.shape[0]]
        if self.rows.dtype == torch.float32:
            torch.mm(normed, self.rows.T, out=out)  # ~15% faster than F.linear into a fresh tensor
        else:
            out.copy_(normed @ self.rows.T)
        return out.add_(self.b_U)


@dataclass
class CleanRows:
    """What the shifts of ablated rows need from the clean rows they are compared with."""

    normed: Float[Tensor, "rows d_model"]
    top_ids: Int[Tensor, "rows k"]  # the top_k tokens (empty when exact)
    top_logp: Float[Tensor, "rows k"]  # their log-probabilities (float64)
    logp_target: Float[Tensor, " rows"]  # log p(observed next token)
    targets: Int[Tensor, " rows"]
    exact: bool


def clean_rows(model, resid: Float[Tensor, "rows d_model"], targets: Int[Tensor, " rows"],
               top_k: int, unembed: Unembedding) -> CleanRows:
    """Full softmax of each clean row, a block of BLOCK rows at a time, kept as its top_k
    tokens' log-probabilities (with top_k = 0, nothing: the exact path recomputes the clean
    logits beside the ablated ones). The logits go into `unembed`'s reused block (a fresh
    vocabulary-sized tensor per block costs page faults), the top tokens and the target are
    read from them before the normaliser overwrites them. Log-probabilities are float32
    (logit - max) - log(sum exp(logit - max)) until the sums, so an answer of probability
    1 - 1e-7 keeps its log, -1e-7, to 7 digits."""
    normed = final_norm(model, resid)
    n = normed.shape[0]
    k = 0 if top_k <= 0 else min(top_k, unembed.rows.shape[0])
    top_ids = torch.empty(n, k, dtype=torch.long, device=normed.device)
    top_logp = torch.empty(n, k, dtype=torch.float64, device=normed.device)
    logp_target = torch.empty(n, dtype=torch.float64, device=normed.device)
    for lo in range(0, n, BLOCK):
        logits = unembed.logits(normed[lo:lo + BLOCK])
        peak = logits.max(dim=-1, keepdim=True).values
        target = logits.gather(1, targets[lo:lo + BLOCK, None]) - peak
        if k:
            top, idx = logits.topk(k, dim=-1)
            top_ids[lo:lo + BLOCK] = idx
        log_z = logits.sub_(peak).exp_().sum(dim=-1, keepdim=True).log_()
        logp_target[lo:lo + BLOCK] = (target - log_z)[:, 0].double()
        if k:
            top_logp[lo:lo + BLOCK] = ((top - peak) - log_z).double()
    return CleanRows(normed, top_ids, top_logp, logp_target, targets, k == 0)


def shifts(model, clean: CleanRows, which: Int[Tensor, " m"], resid: Float[Tensor, "m d_model"],
           unembed: Unembedding) -> tuple[Float[Tensor, " m"], Float[Tensor, " m"]]:
    """(KL(clean || ablated), dCE of the observed token) of each ablated row, row r compared with
    clean row ``which[r]`` (float64), SHIFT_ROWS rows at a time."""
    parts = [_shifts(model, clean, which[lo:lo + SHIFT_ROWS], resid[lo:lo + SHIFT_ROWS], unembed)
             for lo in range(0, which.shape[0], SHIFT_ROWS)]
    return torch.cat([kl for kl, _ in parts]), torch.cat([dce for _, dce in parts])


def _shifts(model, clean: CleanRows, which: Tensor, resid: Tensor, unembed: Unembedding,
            ) -> tuple[Tensor, Tensor]:
    delta = (final_norm(model, resid) - clean.normed[which]).double()
    dl_target = (delta * unembed.rows[clean.targets[which]].double()).sum(-1)
    if clean.exact:
        log_a, mean_dl = _exact_sums(clean, which, delta, unembed)
        kl = log_a - mean_dl
    else:
        dl = _top_shifts(clean, which, delta.float(), unembed.rows)
        logp = clean.top_logp[which]
        log_mass = torch.logsumexp(logp, dim=-1)
        cond = logp - log_mass[:, None]  # log p|T
        log_a = torch.logsumexp(cond + dl, dim=-1)
        kl = log_mass.exp() * (log_a - (cond.exp() * dl).sum(-1))
    unchanged = (delta == 0).all(-1)
    return (torch.where(unchanged, 0.0, kl.clamp_min(0.0)),
            torch.where(unchanged, 0.0, log_a - dl_target))


def _top_shifts(clean: CleanRows, which: Tensor, delta: Float[Tensor, "m d_model"],
                rows: Float[Tensor, "vocab d_model"]) -> Float[Tensor, "m k"]:
    """The logit change of each ablated row on its clean row's top tokens (float64). The rows
    compared with one clean row, made contiguous by sorting, share its tokens' unembedding
    rows, gathered once into one reused buffer (a fresh k x d_model tensor per clean row costs
    page faults), and their products go straight into one float32 block."""
    k = clean.top_ids.shape[1]
    buf = torch.empty(k, rows.shape[1], dtype=rows.dtype, device=rows.device)
    order = torch.argsort(which, stable=True)
    uniq, counts = torch.unique_consecutive(which[order], return_counts=True)
    ordered = delta[order]
    got = torch.empty(which.shape[0], k, dtype=delta.dtype, device=delta.device)
    lo = 0
    for j, c in zip(uniq.tolist(), counts.tolist()):
        torch.index_select(rows, 0, clean.top_ids[j], out=buf)
        torch.mm(ordered[lo:lo + c], buf.T, out=got[lo:lo + c])
        lo += c
    return torch.empty(got.shape, dtype=torch.float64, device=got.device).index_copy_(
        0, order, got.double())


def _exact_sums(clean: CleanRows, which: Tensor, delta: Tensor, unembed: Unembedding,
                ) -> tuple[Tensor, Tensor]:
    """(log E_p[exp(dl)], E_p[dl]) over the whole vocabulary (the reference path)."""
    W_U, b_U = unembed.W_U, unembed.b_U
    log_a = torch.empty(which.shape[0], dtype=torch.float64, device=delta.device)
    mean_dl = torch.empty_like(log_a)
    for lo in range(0, which.shape[0], BLOCK):
        rows = which[lo:lo + BLOCK]
        logp = torch.log_softmax((clean.normed[rows] @ W_U + b_U).double(), dim=-1)
        dl = (delta[lo:lo + BLOCK].float() @ W_U).double()
        log_a[lo:lo + BLOCK] = torch.logsumexp(logp + dl, dim=-1)
        mean_dl[lo:lo + BLOCK] = (logp.exp() * dl).sum(-1)
    return log_a, mean_dl
