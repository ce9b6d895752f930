"""How far an ablation moves the next-token distribution: KL(clean || ablated) and the change of
the observed token's cross-entropy, from final-residual rows, without a vocabulary-sized tensor
per ablated row.

With logits l = W_U^T norm(h) (+ b_U, which cancels; Gemma-3 has no soft-cap) and the logit
change of the ablated row dl = W_U^T d, d = norm(h') - norm(h):

    KL(p || q) = -E_p[dl] + log E_p[exp(dl)],     dCE(y) = -dl_y + log E_p[exp(dl)].

E_p[dl] = mu . d with mu = W_U p, exact. E_p[exp(dl)] needs every token: it is computed exactly
over the clean distribution's ``top_k`` most likely tokens, and the rest (mass p_rest) moves by
its mean logit change mu_rest . d: the KL of the distribution coarse-grained so, a lower bound
of the exact KL by Jensen's inequality, exact when the tail moves rigidly. ``top_k = 0`` computes
the exact sums over the whole vocabulary instead (the reference; ~130x the cost at Gemma-3's
262,144 tokens). log E_p[exp(dl)] is a float64 logsumexp of log p + dl (no cancellation when
the answer's mass moves away); a row equal to its clean row gives exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

# Clean rows per vocabulary-sized block ([BLOCK, d_vocab] float32: 64 MiB at 262k).
BLOCK = 64


def _norm(model, resid: Float[Tensor, "rows d_model"]) -> Float[Tensor, "rows d_model"]:
    return model.ln_final(resid[None])[0] if model.cfg.normalization_type is not None else resid


def _check_no_softcap(model) -> None:
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    if cap is not None and cap > 0:
        raise ValueError("the logit shift is linear only without a logit soft-cap; this model "
                         f"caps logits at {cap}")


@dataclass
class CleanRows:
    """What the shifts of ablated rows need from the clean rows they are compared with."""

    normed: Float[Tensor, "rows d_model"]
    mu: Float[Tensor, "rows d_model"]  # W_U p: the expected unembedding vector
    top_ids: Int[Tensor, "rows k"]  # the top_k tokens (all tokens when top_k = 0: empty)
    top_logp: Float[Tensor, "rows k"]  # their log-probabilities (float64)
    mu_rest: Float[Tensor, "rows d_model"]  # the tail's mean unembedding vector
    p_rest: Float[Tensor, " rows"]  # the tail's mass (float64)
    logp_target: Float[Tensor, " rows"]  # log p(observed next token)
    targets: Int[Tensor, " rows"]
    exact: bool

    def p_top_mass(self) -> Float[Tensor, " rows"]:
        return 1.0 - self.p_rest


def clean_rows(model, resid: Float[Tensor, "rows d_model"], targets: Int[Tensor, " rows"],
               top_k: int) -> CleanRows:
    """Full softmax of each clean row, a block of BLOCK rows at a time, kept as its top_k tokens,
    mu, the tail's mean vector and mass (or, with top_k = 0, only mu: the exact path recomputes
    the clean logits beside the ablated ones)."""
    _check_no_softcap(model)
    W_U, b_U = model.W_U, model.b_U
    normed = _norm(model, resid)
    n, d = normed.shape
    k = 0 if top_k <= 0 else min(top_k, W_U.shape[1])
    mu = torch.empty(n, d, dtype=torch.float64, device=normed.device)
    mu_rest = torch.zeros(n, d, dtype=torch.float64, device=normed.device)
    top_ids = torch.empty(n, k, dtype=torch.long, device=normed.device)
    top_logp = torch.empty(n, k, dtype=torch.float64, device=normed.device)
    p_rest = torch.zeros(n, dtype=torch.float64, device=normed.device)
    logp_target = torch.empty(n, dtype=torch.float64, device=normed.device)
    for lo in range(0, n, BLOCK):
        h = normed[lo:lo + BLOCK]
        logp = torch.log_softmax((h @ W_U + b_U).double(), dim=-1)
        logp_target[lo:lo + BLOCK] = logp.gather(1, targets[lo:lo + BLOCK, None])[:, 0]
        p = logp.exp().float()
        mu[lo:lo + BLOCK] = (p @ W_U.T.float()).double()
        if k:
            top, idx = logp.topk(k, dim=-1)
            val = top.exp()
            top_ids[lo:lo + BLOCK], top_logp[lo:lo + BLOCK] = idx, top
            rest = (1.0 - val.sum(-1)).clamp_min(0.0)
            p_rest[lo:lo + BLOCK] = rest
            # one row at a time: W_U's columns gathered for a whole block would be
            # [d_model, rows, k] (hundreds of MB)
            top_vec = torch.stack([W_U[:, i].double() @ v for i, v in zip(idx, val)])
            mu_rest[lo:lo + BLOCK] = torch.where(
                rest[:, None] > 1e-12, (mu[lo:lo + BLOCK] - top_vec) / rest.clamp_min(1e-12)[:, None],
                torch.zeros_like(top_vec))
    return CleanRows(normed, mu, top_ids, top_logp, mu_rest, p_rest, logp_target, targets,
                     k == 0)


def shifts(model, clean: CleanRows, which: Int[Tensor, " m"],
           resid: Float[Tensor, "m d_model"]) -> tuple[Float[Tensor, " m"], Float[Tensor, " m"]]:
    """(KL(clean || ablated), dCE of the observed token) of each ablated row, row r compared with
    clean row ``which[r]`` (float64)."""
    delta = (_norm(model, resid) - clean.normed[which]).double()
    first = (delta * clean.mu[which]).sum(-1)
    dl_target = (delta * model.W_U[:, clean.targets[which]].T.double()).sum(-1)
    if clean.exact:
        log_a = _exact_log_ratio(model, clean, which, resid)
    else:
        dl = torch.empty(which.shape[0], clean.top_ids.shape[1], dtype=torch.float64,
                         device=delta.device)
        for j in which.unique().tolist():  # rows compared with one clean row share its tokens
            at = torch.nonzero(which == j)[:, 0]
            dl[at] = (delta[at].float() @ model.W_U[:, clean.top_ids[j]]).double()
        tail = torch.log(clean.p_rest[which]) + (delta * clean.mu_rest[which]).sum(-1)
        log_a = torch.logsumexp(torch.cat([clean.top_logp[which] + dl, tail[:, None]], 1), 1)
    unchanged = (delta == 0).all(-1)
    kl = torch.where(unchanged, 0.0, log_a - first).clamp_min(0.0)
    return kl, torch.where(unchanged, 0.0, log_a - dl_target)


def _exact_log_ratio(model, clean: CleanRows, which: Tensor, resid: Tensor) -> Tensor:
    """log E_p[exp(dl)] over the whole vocabulary (the reference path)."""
    W_U, b_U = model.W_U, model.b_U
    normed = _norm(model, resid)
    out = torch.empty(resid.shape[0], dtype=torch.float64, device=resid.device)
    for lo in range(0, resid.shape[0], BLOCK):
        rows = which[lo:lo + BLOCK]
        logp = torch.log_softmax((clean.normed[rows] @ W_U + b_U).double(), dim=-1)
        dl = ((normed[lo:lo + BLOCK] - clean.normed[rows]) @ W_U).double()
        out[lo:lo + BLOCK] = torch.logsumexp(logp + dl, dim=-1)
    return out
