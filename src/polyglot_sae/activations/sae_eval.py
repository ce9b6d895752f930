"""SAE quality on held-out pairs, per language: L0, variance explained, and the LM's loss with
the SAE spliced in at the hook (special tokens such as BOS keep their original activation)."""

from __future__ import annotations

from collections import defaultdict

import polars as pl
import torch
import torch.nn.functional as F

from polyglot_sae.activations import extract
from polyglot_sae.activations.extract import ExtractConfig
from polyglot_sae.activations.forward import hook_batches, tokenize
from polyglot_sae.model.load import special_token_ids


class _Totals:
    def __init__(self) -> None:
        self.tokens = 0
        self.active = 0.0
        self.sq_err = 0.0
        self.sum_x: torch.Tensor | None = None
        self.sum_sq = 0.0
        self.ce_clean = 0.0
        self.ce_spliced = 0.0
        self.ce_tokens = 0

    def add_recon(self, x: torch.Tensor, active: torch.Tensor, recon: torch.Tensor) -> None:
        """``active``: the firing latents of each of ``x``'s tokens."""
        x64 = x.double()
        self.tokens += x.shape[0]
        self.active += float(active.sum())
        self.sq_err += float(((recon.double() - x64) ** 2).sum())
        self.sum_sq += float((x64**2).sum())
        s = x64.sum(0)
        self.sum_x = s if self.sum_x is None else self.sum_x + s

    def summary(self) -> dict[str, float]:
        assert self.sum_x is not None
        total_var = self.sum_sq - float((self.sum_x**2).sum()) / self.tokens
        return {
            "tokens": self.tokens,
            "l0": self.active / self.tokens,
            "fve": 1.0 - self.sq_err / total_var,
            "ce_clean": self.ce_clean / self.ce_tokens,
            "ce_spliced": self.ce_spliced / self.ce_tokens,
            "ce_delta": (self.ce_spliced - self.ce_clean) / self.ce_tokens,
        }


def _next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Summed next-token cross-entropy per sentence over its real tokens."""
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(),
                             reduction="none").view(tokens.shape[0], -1)
    keep = torch.arange(tokens.shape[1] - 1)[None, :] < (torch.tensor(lengths)[:, None] - 1)
    return (losses * keep.to(losses.device)).sum(1)


def _encode_decode(sae, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(firing latents per position, reconstruction) of a (batch, pos, d_model) batch, encoded
    in blocks of positions whose dense activations fit ``extract.ENCODE_BLOCK_BYTES`` (a batch
    of 8 x 128 positions at 1M latents would be 4 GiB per dense tensor)."""
    flat = resid.reshape(-1, resid.shape[-1])
    step = extract.block_rows(sae)
    recon = torch.empty_like(flat)
    active = torch.empty(flat.shape[0], dtype=torch.int64, device=flat.device)
    for lo in range(0, flat.shape[0], step):
        feats = sae.encode(flat[lo:lo + step].to(sae.dtype))
        recon[lo:lo + step] = sae.decode(feats).to(resid.dtype)
        active[lo:lo + step] = (feats > 0).sum(-1)
        del feats
    return active.view(resid.shape[:-1]), recon.view_as(resid)


@torch.inference_mode()
def evaluate_sae(model, sae, hook: str, pairs: pl.DataFrame, cfg: ExtractConfig,
                 batch_size: int = 8) -> dict[str, dict[str, float]]:
    special = special_token_ids(model.tokenizer)
    sentences = tokenize(model.tokenizer, pairs, cfg.max_tokens)
    totals: dict[str, _Totals] = defaultdict(_Totals)
    for b in hook_batches(model, hook, sentences, batch_size, desc="evaluate", with_logits=True):
        resid, tokens = b.acts, b.tokens
        mask = torch.from_numpy(b.real(special)).to(resid.device)
        active, recon = _encode_decode(sae, resid)
        for row, s in enumerate(b.sentences):
            m = mask[row]
            totals[s.lang].add_recon(resid[row][m], active[row][m], recon[row][m])

        def splice(act, hook=None, recon=recon, mask=mask):  # noqa: ARG001
            return torch.where(mask.unsqueeze(-1), recon, act)

        lengths = [len(s.token_ids) for s in b.sentences]
        clean = _next_token_loss(b.logits, tokens, lengths)
        spliced = _next_token_loss(model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)]),
                                   tokens, lengths)
        for row, s in enumerate(b.sentences):
            t = totals[s.lang]
            t.ce_clean += float(clean[row])
            t.ce_spliced += float(spliced[row])
            t.ce_tokens += lengths[row] - 1
    return {lang: t.summary() for lang, t in sorted(totals.items())}
