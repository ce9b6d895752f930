"""The numerics of the causal check: the model resumed from an edited hook activation, the
next-token loss computed in chunks, a feature ablated, a feature steered.

Layout, chosen so that "nothing changed" comes out as exactly 0.0: a sentence's clean run and
its ablated copies (one per feature) go through the model as rows of one batch of identical
shape, so the clean row and an unchanged copy take the same arithmetic bit for bit; the
unembedding runs on fixed-size blocks of rows (zero-padded), whose per-row results do not depend
on the other rows. The vocabulary (262,144 for Gemma-3) is never held as a full
[batch, pos, vocab] tensor: only the positions the loss needs, ``CHUNK`` rows at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from polyglot_sae.errors import InputError

# Rows per unembedding block: [CHUNK, d_vocab] float32 logits (64 MiB at 262k) at a time. Every
# block has exactly this many rows (the last one zero-padded), so a row's logits never depend on
# how many rows share its block.
CHUNK = 64

_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


@dataclass
class Resumer:
    """Runs `model` from `hook` on: with ``start`` set (a residual-stream hook), only the blocks
    after it (TransformerLens' ``start_at_layer``); else a full forward with the hook's
    activation replaced (``run_with_hooks``)."""

    model: object
    hook: str
    start: int | None

    @classmethod
    def for_hook(cls, model, hook: str) -> Resumer:
        match = _RESID.match(hook)
        start = None
        if match:
            layer = int(match.group(1))
            start = layer + 1 if match.group(2) == "post" else layer
        return cls(model, hook, start)

    def final_resid(self, tokens: Int[Tensor, "batch pos"], acts: Float[Tensor, "batch pos d"],
                    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream before the final norm, with `acts` at the hook."""
        n_layers = self.model.cfg.n_layers
        if self.start is not None:
            return self.model(acts, start_at_layer=self.start, stop_at_layer=n_layers)

        def replace(act, hook):  # noqa: ARG001 (TransformerLens passes the hook point)
            if act.shape != acts.shape:
                raise InputError(self.hook, "hook", f"activation shape {tuple(act.shape)} is not "
                                 f"[batch, pos, d] {tuple(acts.shape)}",
                                 "use an SAE at a hook with one vector per token")
            return acts

        return self.model.run_with_hooks(tokens, fwd_hooks=[(self.hook, replace)],
                                         stop_at_layer=n_layers)


def logit_blocks(model, resid: Float[Tensor, "rows d_model"]):
    """Yield (start, n, logits) over blocks of CHUNK rows of the final residual stream: the
    final norm, the unembedding and any soft-cap, in float32, into one reused buffer (a fresh
    64 MiB tensor per block costs page faults; the caller reads the block before the next)."""
    from transformer_lens.HookedTransformer import apply_softcap

    W_U, b_U = model.W_U, model.b_U
    cap = model.cfg.output_logits_soft_cap
    buf = torch.empty(CHUNK, W_U.shape[1], dtype=W_U.dtype, device=W_U.device)
    for lo in range(0, resid.shape[0], CHUNK):
        block = resid[lo:lo + CHUNK]
        n = block.shape[0]
        if n < CHUNK:
            block = torch.cat([block, block.new_zeros(CHUNK - n, block.shape[1])])
        h = model.ln_final(block[None])[0] if model.cfg.normalization_type is not None else block
        torch.mm(h, W_U, out=buf)
        buf.add_(b_U)
        logits = apply_softcap(buf, cap)
        yield lo, n, logits.float()


def _logsumexp_(logits: Float[Tensor, "rows vocab"]) -> Float[Tensor, " rows"]:
    """logsumexp over the last axis, overwriting `logits` (no second vocab-sized tensor)."""
    top = logits.max(dim=-1, keepdim=True).values
    return top[:, 0] + logits.sub_(top).exp_().sum(dim=-1).log()


def token_losses(model, resid: Float[Tensor, "rows d_model"], targets: Int[Tensor, " rows"],
                 ) -> Float[Tensor, " rows"]:
    """Cross-entropy of `targets` from each row of the final residual stream:
    logsumexp(logits) - logits[target]."""
    out = torch.empty(resid.shape[0], dtype=torch.float32, device=resid.device)
    for lo, n, logits in logit_blocks(model, resid):
        picked = logits[:n].gather(1, targets[lo:lo + n, None])[:, 0].clone()
        out[lo:lo + n] = _logsumexp_(logits[:n]) - picked
    return out


def set_logprobs(model, resid: Float[Tensor, "rows d_model"],
                 sets: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
    """Per row r and each token set in ``sets[r]``: log P(next token in the set), the
    logsumexp of the set's logits minus that of all logits (NaN for an empty set)."""
    out: list[list[float]] = []
    for lo, n, logits in logit_blocks(model, resid):
        picked = [[logits[r, list(x)].double().clone() if len(x) else None
                   for x in sets[lo + r]] for r in range(n)]
        lse = _logsumexp_(logits[:n]).double()
        for r in range(n):
            out.append([float(torch.logsumexp(v, 0) - lse[r]) if v is not None else float("nan")
                        for v in picked[r]])
    return out


@dataclass(frozen=True)
class Ablation:
    """One feature to ablate on one sentence, with the first loss position (its first firing)."""

    feature: int
    start: int


def ablate(sae, acts: Float[Tensor, "pos d"], feature: int, real: torch.Tensor,
           codes: Float[Tensor, "pos d_sae"] | None = None) -> Float[Tensor, "pos d"]:
    """``x - f_i(x) W_dec[i]`` at the real (non-special) positions: the feature's contribution
    removed, the SAE's reconstruction error and every other feature kept. Where f_i = 0 the
    result is ``x`` itself, bit for bit. `codes`: ``sae.encode(acts)`` when already computed."""
    if codes is None:
        codes = sae.encode(acts.to(sae.dtype))
    f = codes[:, feature].to(acts.dtype) * real.to(acts.dtype)
    return acts - f[:, None] * sae.W_dec[feature].to(acts.dtype)[None, :]


def first_firing(sae, acts: Float[Tensor, "pos d"], real: torch.Tensor,
                 ) -> Int[Tensor, " d_sae"]:
    """Per feature, the first real position where it fires with a next token left to predict
    (position < pos - 1); -1 where there is none."""
    pos = acts.shape[0]
    fires = (sae.encode(acts.to(sae.dtype)) > 0) & real[:, None]
    fires[pos - 1:] = False
    any_fire = fires.any(0)
    first = fires.to(torch.uint8).argmax(0)
    return torch.where(any_fire, first, torch.full_like(first, -1))


class LossBank:
    """Final-residual rows with their next tokens, from any number of sentences; their
    cross-entropies are computed CHUNK rows at a time as the rows come (so no block is padded
    but the last) and read back by the ranges `add` returned."""

    def __init__(self, model) -> None:
        self.model = model
        self.rows: list[Tensor] = []
        self.targets: list[Tensor] = []
        self.pending = 0
        self.done: list[Tensor] = []
        self.size = 0

    def add(self, resid: Float[Tensor, "rows d_model"], targets: Int[Tensor, " rows"],
            ) -> tuple[int, int]:
        lo = self.size
        self.rows.append(resid)
        self.targets.append(targets)
        self.pending += resid.shape[0]
        self.size += resid.shape[0]
        if self.pending >= CHUNK:
            self._run(full_only=True)
        return lo, self.size

    def _run(self, full_only: bool) -> None:
        rows, targets = torch.cat(self.rows), torch.cat(self.targets)
        keep = rows.shape[0] % CHUNK if full_only else 0
        cut = rows.shape[0] - keep
        if cut:
            self.done.append(token_losses(self.model, rows[:cut], targets[:cut]))
        self.rows, self.targets, self.pending = [rows[cut:]], [targets[cut:]], keep

    def losses(self) -> Float[Tensor, " rows"]:
        if self.pending:
            self._run(full_only=False)
        return torch.cat(self.done) if self.done else torch.empty(0)


@dataclass(frozen=True)
class _Pending:
    """Where one ablation's losses and its clean losses lie in a LossBank."""

    ablated: tuple[int, int]
    clean: tuple[int, int]


def queue_sentence(bank: LossBank, resumer: Resumer, sae, tokens: Int[Tensor, " pos"],
                   acts: Float[Tensor, "pos d"], real: torch.Tensor,
                   ablations: Sequence[Ablation], batch_size: int,
                   window: int | None = None) -> list[_Pending]:
    """Run the ablations of one sentence, ``batch_size - 1`` at a time beside the sentence's
    clean run, and put the rows whose losses are needed in `bank`: the clean row at every
    position any ablation of the batch needs, each ablated row from its start on."""
    n = tokens.shape[0]
    out: list[_Pending] = []
    per_batch = batch_size - 1
    for lo in range(0, len(ablations), per_batch):
        group = ablations[lo:lo + per_batch]
        ends = [n - 1 if window is None else min(n - 1, a.start + window) for a in group]
        if any(a.start < 0 or a.start >= e for a, e in zip(group, ends)):
            raise ValueError("an ablation's start must leave a position to predict")
        length = max(ends) + 1  # tokens the needed predictions depend on (causal model)
        x = acts[:length]
        codes = sae.encode(x.to(sae.dtype))
        rows = [x] + [ablate(sae, x, a.feature, real[:length], codes) for a in group]
        final = resumer.final_resid(tokens[:length].expand(len(rows), -1), torch.stack(rows))
        first = min(a.start for a in group)
        c0, _ = bank.add(final[0, first:length - 1], tokens[first + 1:length])
        for i, (a, e) in enumerate(zip(group, ends), start=1):
            span = bank.add(final[i, a.start:e], tokens[a.start + 1:e + 1])
            out.append(_Pending(span, (c0 + a.start - first, c0 + e - first)))
    return out


def read_deltas(losses: Float[Tensor, " rows"], pending: Sequence[_Pending],
                ) -> list[tuple[float, float]]:
    """(mean loss increase, mean clean loss) of each queued ablation."""
    out = []
    for p in pending:
        ablated = losses[p.ablated[0]:p.ablated[1]].double()
        clean = losses[p.clean[0]:p.clean[1]].double()
        out.append((float((ablated - clean).mean()), float(clean.mean())))
    return out


def sentence_deltas(resumer: Resumer, sae, tokens: Int[Tensor, " pos"],
                    acts: Float[Tensor, "pos d"], real: torch.Tensor,
                    ablations: Sequence[Ablation], batch_size: int,
                    window: int | None = None) -> list[tuple[float, float]]:
    """Per ablation: (mean loss increase, mean clean loss) over the loss positions from its
    start to the end of the sentence (or `window` of them). The loss at position t is the
    cross-entropy of token t+1. One sentence; ``queue_sentence`` with a shared LossBank does
    many."""
    bank = LossBank(resumer.model)
    pending = queue_sentence(bank, resumer, sae, tokens, acts, real, ablations, batch_size,
                             window)
    return read_deltas(bank.losses(), pending)


def steering_deltas(resumer: Resumer, sae, tokens: Int[Tensor, " pos"],
                    acts: Float[Tensor, "pos d"], features: Sequence[int],
                    alphas: Sequence[float], word_sets: Sequence[Sequence[Sequence[int]]],
                    batch_size: int) -> list[list[float]]:
    """Per feature i: for each of its word sets, the change of log P(next token in the set)
    at the context's last position when ``alphas[i] * W_dec[i]`` is added to the hook's
    activation there (the log-prob of a set is the logsumexp of its tokens' log-probs).
    NaN for an empty set."""
    model = resumer.model
    out: list[list[float]] = []
    per_batch = batch_size - 1
    for lo in range(0, len(features), per_batch):
        group = list(range(lo, min(len(features), lo + per_batch)))
        rows = [acts]
        for i in group:
            steered = acts.clone()
            steered[-1] = steered[-1] + alphas[i] * sae.W_dec[features[i]].to(acts.dtype)
            rows.append(steered)
        final = resumer.final_resid(tokens.expand(len(rows), -1), torch.stack(rows))
        wanted = [[x for i in group for x in word_sets[i]]] + [list(word_sets[i]) for i in group]
        got = set_logprobs(model, final[:, -1], wanted)
        offset = 0
        for j, i in enumerate(group, start=1):
            k = len(word_sets[i])
            out.append([a - b for a, b in zip(got[j], got[0][offset:offset + k])])
            offset += k
    return out
