"""The numerics of the causal check: the model resumed from an edited hook activation, a
feature ablated (its effect on the next-token distribution by ``shift``), a feature steered.

Layout, chosen so that "nothing changed" comes out as exactly 0.0. On Gemma-2/3 at a
residual-stream hook (``_Windows``): the clean sentences run through the blocks after the hook
once, batched, and each ablated copy only over its window, on the clean run's keys and values
(``model.lean_resume``; the windows of a batch's sentences go through the blocks together); a
copy that does not differ from the clean activations before its window's end is the clean run
there, exactly. Otherwise (``_WholeRows``): a sentence's clean run
and its ablated copies go through TransformerLens as rows of one batch of identical shape, so
the clean row and an unchanged copy take the same arithmetic bit for bit. The shifts are
computed from the difference of the two rows. The vocabulary (262,144 for Gemma-3) is never
held as a full [batch, pos, vocab] tensor: for the ablations only the clean rows' full softmax,
``shift.BLOCK`` rows at a time; for steering, blocks of ``CHUNK`` rows (zero-padded, so a row's
logits do not depend on the other rows)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from polyglot_sae.errors import InputError
from polyglot_sae.model.lean_forward import lean_supports
from polyglot_sae.model.lean_resume import CleanRun, LeanResume

from .shift import Unembedding, clean_rows, final_norm, shifts

# Window positions of edited copies per pass through the resumed blocks (``_Windows``), across
# a batch's sentences: the matmuls run at ~125 GFLOP/s with 1024 rows against ~97 with the 248
# of one sentence's 31 copies (2-core AVX2, float32).
WINDOW_ROWS = 1024

# Rows per unembedding block: [CHUNK, d_vocab] float32 logits (64 MiB at 262k) at a time. Every
# block has exactly this many rows (the last one zero-padded), so a row's logits never depend on
# how many rows share its block.
CHUNK = 64

_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


@dataclass
class Resumer:
    """Runs `model` from `hook` on: with ``start`` set (a residual-stream hook), only the blocks
    after it, by ``lean`` (``model.lean_resume``, Gemma-2/3) or else TransformerLens'
    ``start_at_layer``; without (any other hook), a full forward with the hook's activation
    replaced (``run_with_hooks``)."""

    model: object
    hook: str
    start: int | None
    lean: LeanResume | None = None

    @classmethod
    def for_hook(cls, model, hook: str) -> Resumer:
        match = _RESID.match(hook)
        start = None
        if match:
            layer = int(match.group(1))
            start = layer + 1 if match.group(2) == "post" else layer
        n_layers = model.cfg.n_layers
        lean = None
        if start is not None and start < n_layers and lean_supports(
                model, f"blocks.{n_layers - 1}.hook_resid_post"):
            lean = LeanResume(model, start)
        return cls(model, hook, start, lean)

    def final_resid(self, tokens: Int[Tensor, "batch pos"], acts: Float[Tensor, "batch pos d"],
                    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream before the final norm, with `acts` at the hook."""
        n_layers = self.model.cfg.n_layers
        if self.lean is not None:
            return self.lean.clean(acts).final
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

    def batch(self, items: Sequence[tuple[Int[Tensor, " pos"], Float[Tensor, "pos d"]]]):
        """What computes the edited copies of a batch of sentences ``(tokens, acts)``:
        `_Windows` when the blocks can resume on windows (the clean sentences then run through
        them as one right-padded batch), else `_WholeRows`."""
        if self.lean is None:
            return _WholeRows(self, items)
        lengths = [acts.shape[0] for _, acts in items]
        batch = items[0][1].new_zeros(len(items), max(lengths), items[0][1].shape[1])
        for b, (_, acts) in enumerate(items):
            batch[b, :lengths[b]] = acts
        return _Windows(self.lean, [acts for _, acts in items], self.lean.clean(batch))


# (the clean final residual over a sentence's prefix, each copy's at its span, the spans)
Runs = list[tuple[Float[Tensor, "pos d_model"], list[Tensor], list[tuple[int, int]]]]


class _WholeRows:
    """Edited copies run whole beside their clean sentence, as rows of one batch per `add` (the
    clean row and an unchanged copy then take the same arithmetic, bit for bit)."""

    def __init__(self, resumer: Resumer, items: Sequence[tuple[Tensor, Tensor]]):
        self.resumer, self.items = resumer, items
        self._runs: dict[int, Runs] = {}

    def add(self, row: int, edited: Sequence[Tensor], spans: Sequence[tuple[int, int]]) -> None:
        """Edited copies of sentence `row`, each compared at its span."""
        tokens, acts = self.items[row]
        length = max(e for _, e in spans)
        rows = torch.stack([acts[:length]] + [x[:length] for x in edited])
        final = self.resumer.final_resid(tokens[:length].expand(len(rows), -1), rows)
        # copies, not views: a view would keep the whole batch alive until `results`
        self._runs.setdefault(row, []).append(
            (final[0].clone(), [final[i, s:e].clone() for i, (s, e) in enumerate(spans, start=1)],
             list(spans)))

    def results(self, row: int) -> Runs:
        """Per `add` of sentence `row`: its own clean run (a clean row is compared only with
        the copies of its own batch)."""
        return self._runs.pop(row, [])


class _Windows:
    """The clean sentences run once, each edited copy only over its window (``lean_resume``):
    from where it first differs from the clean activations (its start, for an ablation from
    the first firing) to its span's end; the windows of all the sentences' copies go through
    the blocks WINDOW_ROWS positions at a time. A copy that does not differ before its span's
    end is the clean run there, exactly."""

    def __init__(self, lean: LeanResume, acts: Sequence[Tensor], run: CleanRun):
        """`run`: the clean runs of the sentences whose activations are `acts`, in order."""
        self.lean, self.acts, self.run = lean, list(acts), run
        self._out: dict[int, list[Tensor]] = {}
        self._spans: dict[int, list[tuple[int, int]]] = {}
        # moved copies waiting for the blocks: (row, copy, start of its window, its rows)
        self._pending: list[tuple[int, int, int, Tensor]] = []
        self._pending_rows = 0

    def _clean(self, row: int) -> Float[Tensor, "pos d_model"]:
        return self.run.final[row, :self.acts[row].shape[0]]

    def add(self, row: int, edited: Sequence[Tensor], spans: Sequence[tuple[int, int]]) -> None:
        """Edited copies of sentence `row`, each compared at its span: a copy that moved waits
        for the next pass through the blocks, one that did not takes the clean run."""
        acts, clean = self.acts[row], self._clean(row)
        out = self._out.setdefault(row, [])
        first = len(out)
        out.extend(clean[s:e] for s, e in spans)
        self._spans.setdefault(row, []).extend(spans)
        device = clean.device
        stacked = torch.stack(list(edited))
        ends = torch.tensor([e for _, e in spans], device=device)
        positions = torch.arange(stacked.shape[1], device=device)
        # per copy, where it first differs from the clean activations before its span's end
        differs = (stacked != acts).any(-1) & (positions < ends[:, None])
        moved = torch.nonzero(differs.any(-1))[:, 0].tolist()
        if moved:
            starts = torch.tensor([s for s, _ in spans], device=device)
            lows = torch.minimum(differs.to(torch.uint8).argmax(-1), starts)[moved].tolist()
            for c, lo in zip(moved, lows):
                self._pending.append((row, first + c, lo, stacked[c, lo:spans[c][1]]))
                self._pending_rows += spans[c][1] - lo
            if self._pending_rows >= WINDOW_ROWS:
                self._flush()

    def results(self, row: int) -> Runs:
        """Sentence `row`'s clean run, shared by all of its copies."""
        if any(p[0] == row for p in self._pending):
            self._flush()
        return [(self._clean(row), self._out.pop(row, []), self._spans.pop(row, []))]

    def _flush(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        device = self.run.final.device
        width = max(x[3].shape[0] for x in pending)
        rows = torch.tensor([x[0] for x in pending], device=device)
        at = torch.tensor([x[2] for x in pending], device=device)[:, None] + torch.arange(
            width, device=device)
        acts = pending[0][3].new_zeros(len(pending), width, pending[0][3].shape[1])
        for k, (_, _, _, x) in enumerate(pending):  # zeros after a window: causal, unseen
            acts[k, :x.shape[0]] = x
        got = self.lean.windows(self.run, rows, acts, at)
        for k, (row, c, lo, _) in enumerate(pending):
            s, e = self._spans[row][c]
            self._out[row][c] = got[k, s - lo:e - lo]


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
        h = final_norm(model, block)
        torch.mm(h, W_U, out=buf)
        buf.add_(b_U)
        logits = apply_softcap(buf, cap)
        yield lo, n, logits.float()


def _logsumexp_(logits: Float[Tensor, "rows vocab"]) -> Float[Tensor, " rows"]:
    """logsumexp over the last axis, overwriting `logits` (no second vocab-sized tensor)."""
    top = logits.max(dim=-1, keepdim=True).values
    return top[:, 0] + logits.sub_(top).exp_().sum(dim=-1).log()


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


@dataclass(frozen=True)
class Effect:
    """One ablation on one sentence, averaged over its loss positions (the loss at t predicts
    token t+1): KL(clean || ablated) of the next-token distribution, the observed token's
    cross-entropy increase, the clean cross-entropy, and the number of positions."""

    kl: float
    dce: float
    clean: float
    positions: int


# Clean rows gathered from many sentences before their softmax statistics are computed: each
# pass over the unembedding (671 MB for Gemma-3-270M, memory-bound) then serves shift.BLOCK
# rows, and the last, partial block of a batch (slower per row) is a small share of it. With
# top_k 2048 a clean row keeps 32 KiB (its top tokens and their log-probabilities).
CLEAN_ROWS = 2048


@dataclass
class _Queued:
    """One batch's rows, waiting for the clean rows' statistics."""

    item: int  # which sentence
    clean: Tensor  # [positions, d_model]: the clean row where some window needs it
    targets: Tensor  # [positions]: the next token at each
    ablated: Tensor  # [rows, d_model]: every ablation's window, one after the other
    which: Tensor  # [rows]: the clean position each ablated row is compared with
    lengths: list[int]  # positions of each ablation

    @classmethod
    def of(cls, item: int, clean: Tensor, tokens: Tensor, windows: Sequence[Tensor],
           spans: Sequence[tuple[int, int]]) -> _Queued:
        """The clean rows only where some window needs them, each once: every clean position
        costs a pass over the whole vocabulary."""
        ranges = [torch.arange(s, e) for s, e in spans]
        needed = torch.unique(torch.cat(ranges))
        slot = torch.full((clean.shape[0],), -1, dtype=torch.long)
        slot[needed] = torch.arange(needed.numel())
        needed = needed.to(tokens.device)
        return cls(item, clean[needed], tokens[needed + 1], torch.cat(list(windows)),
                   torch.cat([slot[r] for r in ranges]), [e - s for s, e in spans])


# one sentence for `effects`: (tokens, acts, real, ablations)
Item = tuple[Int[Tensor, " pos"], Float[Tensor, "pos d"], torch.Tensor, Sequence[Ablation]]


def effects(resumer: Resumer, sae, items: Sequence[Item], batch_size: int,
            window: int | None = None, top_k: int = 0,
            unembed: Unembedding | None = None, counts: dict | None = None,
            ) -> list[list[Effect]]:
    """Per sentence ``(tokens, acts, real, ablations)``, each ablation's ``Effect`` over the
    positions from its start to the end of the sentence, or `window` of them. The sentences'
    clean runs go ``batch_size`` at a time (by length), each only as long as its windows need
    (the model is causal); their ablations ``batch_size - 1`` at a time (``_WholeRows``) or
    WINDOW_ROWS window positions at a time across the batch (``_Windows``); the shifts
    (``shift``; ``top_k``: its approximation, 0: exact) are computed CLEAN_ROWS clean rows at a
    time across sentences.
    ``unembed``: the run's ``shift.Unembedding``, built here when not given. ``counts``, when
    given, gets ``clean_rows`` (clean positions through the full softmax) and
    ``ablated_positions`` (the windows' positions)."""
    unembed = unembed or Unembedding(resumer.model)
    out: list[list[Effect]] = [[] for _ in items]
    queue: list[_Queued] = []
    bar = tqdm(total=sum(len(x[3]) for x in items), desc="causal ablation", unit="ablation",
               file=sys.stderr, mininterval=5, disable=len(items) < 2)
    ends = {}
    for item, (tokens, _, _, ablations) in enumerate(items):
        n = tokens.shape[0]
        ends[item] = [n - 1 if window is None else min(n - 1, a.start + window)
                      for a in ablations]
        if any(a.start < 0 or a.start >= e for a, e in zip(ablations, ends[item])):
            raise ValueError("an ablation's start must leave a position to predict")
    # tokens the needed predictions depend on (causal model)
    lengths = {item: max(e) + 1 for item, e in ends.items() if e}
    # sentences of similar lengths share a clean run (it is right-padded to its longest)
    todo = sorted(lengths, key=lambda i: (lengths[i], i))
    for lo in range(0, len(todo), batch_size):
        chunk = todo[lo:lo + batch_size]
        batch = resumer.batch([(items[i][0][:lengths[i]], items[i][1][:lengths[i]])
                               for i in chunk])
        for row, item in enumerate(chunk):
            _, acts, real, ablations = items[item]
            length = lengths[item]
            x = acts[:length]
            codes = sae.encode(x.to(sae.dtype))
            spans = [(a.start, e) for a, e in zip(ablations, ends[item])]
            for at in range(0, len(ablations), batch_size - 1):
                group = ablations[at:at + batch_size - 1]
                batch.add(row, [ablate(sae, x, a.feature, real[:length], codes) for a in group],
                          spans[at:at + len(group)])
                bar.update(len(group))
        for row, item in enumerate(chunk):
            queue.extend(_Queued.of(item, clean, items[item][0], windows, spans)
                         for clean, windows, spans in batch.results(row))
        if sum(q.clean.shape[0] for q in queue) >= CLEAN_ROWS:
            _settle(resumer.model, queue, top_k, unembed, out, counts)
            queue = []
    if queue:
        _settle(resumer.model, queue, top_k, unembed, out, counts)
    bar.close()
    return out


def _settle(model, queue: Sequence[_Queued], top_k: int, unembed: Unembedding,
            out: list[list[Effect]], counts: dict | None) -> None:
    """The queued batches' effects, appended to their sentences' lists in queue order; their
    rows added to `counts` (``effects``)."""
    if counts is not None:
        for key, rows in (("clean_rows", sum(q.clean.shape[0] for q in queue)),
                          ("ablated_positions", sum(q.ablated.shape[0] for q in queue))):
            counts[key] = counts.get(key, 0) + rows
    offsets = np.cumsum([0] + [q.clean.shape[0] for q in queue])
    clean = clean_rows(model, torch.cat([q.clean for q in queue]),
                       torch.cat([q.targets for q in queue]), top_k, unembed)
    which = torch.cat([q.which + int(o) for q, o in zip(queue, offsets)]).to(clean.normed.device)
    kl, dce = shifts(model, clean, which, torch.cat([q.ablated for q in queue]), unembed)
    ce = -clean.logp_target[which]
    at = 0
    for q in queue:
        for k in q.lengths:
            out[q.item].append(Effect(float(kl[at:at + k].mean()), float(dce[at:at + k].mean()),
                                      float(ce[at:at + k].mean()), k))
            at += k


def sentence_effects(resumer: Resumer, sae, tokens: Int[Tensor, " pos"],
                     acts: Float[Tensor, "pos d"], real: torch.Tensor,
                     ablations: Sequence[Ablation], batch_size: int, window: int | None = None,
                     top_k: int = 0, unembed: Unembedding | None = None) -> list[Effect]:
    """``effects`` of one sentence."""
    return effects(resumer, sae, [(tokens, acts, real, ablations)], batch_size, window, top_k,
                   unembed)[0]


def steering_deltas(resumer: Resumer, sae,
                    contexts: Sequence[tuple[Int[Tensor, " pos"], Float[Tensor, "pos d"]]],
                    features: Sequence[int], alphas: Sequence[float],
                    word_sets: Sequence[Sequence[Sequence[int]]],
                    batch_size: int) -> list[list[list[float]]]:
    """Per context ``(tokens, acts)`` and feature i: for each of its word sets, the change of
    log P(next token in the set) at the context's last position when ``alphas[i] * W_dec[i]``
    is added to the hook's activation there (the log-prob of a set is the logsumexp of its
    tokens' log-probs). NaN for an empty set. The contexts' last rows share the unembedding's
    blocks (a block of CHUNK rows costs the same however few of them are real)."""
    per_batch = batch_size - 1
    groups = [range(lo, min(len(features), lo + per_batch))
              for lo in range(0, len(features), per_batch)]
    # per group: its clean row's sets (all its features' words), then each steered row's
    sets = [[[x for i in g for x in word_sets[i]]] + [list(word_sets[i]) for i in g]
            for g in groups]
    finals, wanted = [], []
    for tokens, acts in contexts:
        for g, g_sets in zip(groups, sets):
            rows = [acts]
            for i in g:
                steered = acts.clone()
                steered[-1] = steered[-1] + alphas[i] * sae.W_dec[features[i]].to(acts.dtype)
                rows.append(steered)
            finals.append(resumer.final_resid(tokens.expand(len(rows), -1),
                                              torch.stack(rows))[:, -1])
            wanted += g_sets
    got = iter(set_logprobs(resumer.model, torch.cat(finals), wanted) if finals else [])
    out: list[list[list[float]]] = []
    for _ in contexts:
        out.append([])
        for g in groups:
            clean, offset = next(got), 0
            for i in g:
                k = len(word_sets[i])
                out[-1].append([a - b for a, b in zip(next(got), clean[offset:offset + k])])
                offset += k
    return out
