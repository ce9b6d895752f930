"""The model's side of extraction: sentences tokenized, batched by length, and run to one or
several hook points in one pass.

The model runs only up to the deepest hook asked for (no logits, no full cache), on
length-sorted batches padded on the right: with causal attention the real tokens never see the
padding, so the result is exact for them and the padding costs little. Several hooks share the
pass: an activation at layer 3 is the same whether the pass stops at layer 4 or at layer 18, so
K hooks cost one pass to the deepest instead of K passes (`python -m polyglot_sae.bench
hooks` measures it).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from polyglot_sae.model.lean_forward import LeanForward, resid_post_layer
from polyglot_sae.model.load import stop_layer


@dataclass(frozen=True)
class Sentence:
    pair_id: int
    lang: str
    token_ids: list[int]


def tokenize(tokenizer, pairs, max_tokens: int) -> list[Sentence]:
    """Tokens with BOS first, as the model saw them in training (`pairs`: a table with pair_id,
    lang, text)."""
    texts = pairs["text"].to_list()
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    out = []
    for pair_id, lang, ids in zip(pairs["pair_id"].to_list(), pairs["lang"].to_list(), encoded):
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        out.append(Sentence(pair_id, lang, ids[:max_tokens]))
    return out


@dataclass(frozen=True)
class Batch:
    sentences: list[Sentence]
    index: Int[np.ndarray, " batch"]  # of each sentence in the list given to hook_batches
    tokens: Int[torch.Tensor, "batch pos"]  # right-padded, on the model's device
    token_ids: Int[np.ndarray, "batch pos"]  # the same on the host
    inside: Bool[np.ndarray, "batch pos"]  # positions inside the sentence (not padding)
    at: dict[str, Float[torch.Tensor, "batch pos d_model"]]  # the activations at each hook
    logits: Float[torch.Tensor, "batch pos d_vocab"] | None  # when asked for

    @property
    def acts(self) -> Float[torch.Tensor, "batch pos d_model"]:
        """The activations at the hook, when one was asked for."""
        (acts,) = self.at.values()
        return acts

    def real(self, special: set[int]) -> Bool[np.ndarray, "batch pos"]:
        """The positions that count: inside a sentence and not a special token (BOS, EOS)."""
        return self.inside & ~np.isin(self.token_ids, np.fromiter(special, np.int64, len(special)))


def length_batches(lengths: Sequence[int], batch_size: int,
                   batch_tokens: int | None = None) -> list[list[int]]:
    """Indices in batches of similar length (sorted by length, then index), so right-padding
    wastes little: `batch_size` sentences each, or with `batch_tokens` as many as fit in that
    many tokens padding included (at least one)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    if batch_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:  # ascending: the newest sentence sets the batch's width
        if batches and (len(batches[-1]) + 1) * lengths[i] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class _Packed:
    """Every sentence's token ids in one flat array, so that a batch is padded by one numpy
    gather: a loop over the sentences would keep a GPU idle (~0.6 s per 16k sentences)."""

    def __init__(self, sentences: Sequence[Sentence]):
        self.lengths = np.fromiter((len(s.token_ids) for s in sentences), np.int64, len(sentences))
        self.flat = np.fromiter(itertools.chain.from_iterable(s.token_ids for s in sentences),
                                np.int64, int(self.lengths.sum()))
        self.starts = np.cumsum(self.lengths) - self.lengths

    def padded(self, idx: Int[np.ndarray, " batch"], pad: int,
               ) -> tuple[Int[np.ndarray, "batch pos"], Bool[np.ndarray, "batch pos"]]:
        """The sentences `idx` right-padded with `pad`, and which positions are inside them."""
        lengths = self.lengths[idx, None]
        cols = np.arange(lengths.max())
        inside = cols < lengths
        gathered = self.flat[self.starts[idx, None] + np.minimum(cols, lengths - 1)]
        return np.where(inside, gathered, pad), inside


def padded_tokens(batch: Sequence[Sentence], pad: int) -> Int[torch.Tensor, "batch pos"]:
    return torch.from_numpy(_Packed(batch).padded(np.arange(len(batch)), pad)[0])


def pad_token_id(model) -> int:
    tokenizer = model.tokenizer
    return (tokenizer.pad_token_id or 0) if tokenizer is not None else 0


def _deepest_stop(hooks: Sequence[str]) -> int | None:
    """TransformerLens' stop_at_layer for a pass that reaches every hook (None: all layers)."""
    stops = [stop_layer(h) for h in hooks]
    return None if any(s is None for s in stops) else max(stops)


def hook_batches(model, hooks: str | Sequence[str], sentences: Sequence[Sentence],
                 batch_size: int, desc: str = "extract", with_logits: bool = False,
                 batch_tokens: int | None = None, lean: LeanForward | None = None,
                 ) -> Iterator[Batch]:
    """Length-sorted, right-padded batches with their activations at each hook, from one pass
    that stops at the deepest hook unless the logits are wanted too. `lean` (from
    `lean_forward_for`), when given, computes the activations instead of TransformerLens.

    TransformerLens' activations are taken by forward hooks rather than `run_with_cache`, which
    would also build an ActivationCache per batch; the tensors are the same."""
    hooks = [hooks] if isinstance(hooks, str) else list(dict.fromkeys(hooks))
    pad = pad_token_id(model)
    stop = None if with_logits else _deepest_stop(hooks)
    if with_logits:
        lean = None
    captured: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        captured[hook.name] = act

    packed = _Packed(sentences)
    with tqdm(total=int(packed.lengths.sum()), desc=desc, unit="tok", file=sys.stderr,
              mininterval=5) as bar:
        for idx in length_batches(packed.lengths.tolist(), batch_size, batch_tokens):
            index = np.asarray(idx, dtype=np.int64)
            token_ids, inside = packed.padded(index, pad)
            tokens = torch.from_numpy(token_ids).to(model.cfg.device, non_blocking=True)
            logits = None
            if lean is not None:
                layers = {h: resid_post_layer(h) for h in hooks}
                out = lean.run(tokens, set(layers.values()))
                at = {h: out[layer] for h, layer in layers.items()}
            else:
                # Entered per batch, not around the loop: the caller runs its own passes between
                # batches (sae_eval splices the SAE in) and must not see these hooks or mode.
                with torch.inference_mode(), model.hooks(fwd_hooks=[(h, keep) for h in hooks]):
                    out = model(tokens, stop_at_layer=stop, return_type="logits")
                at = {h: captured.pop(h) for h in hooks}
                logits = out if with_logits else None
            yield Batch([sentences[i] for i in idx], index, tokens, token_ids, inside, at, logits)
            bar.update(int(packed.lengths[index].sum()))
