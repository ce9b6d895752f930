"""The blocks after a residual-stream hook, for clean sentences and many edited copies of them
whose edits start late in the sentence (the causal check's ablations: a feature is removed from
its first firing on).

A copy equals the clean sentence before its edit, so, the model being causal, its residual
stream, keys and values there are the clean run's. The clean sentence runs through the blocks
once (`clean`, keeping every block's keys and values); an edited copy then runs only its window,
the positions from its edit's start to the last one its caller needs (`windows`), its queries
attending to the clean keys and values before the window and to its own within it. Against
running every copy over the whole sentence, the work per copy drops from the sentence's length
to the window's (about 4x for Bible verses and a window of 8). The numbers are those of the full
run up to float rounding (matmuls of other shapes): `tests/test_lean_resume.py` compares them with
TransformerLens' `start_at_layer`.

Same architectures as `lean_forward` (Gemma-2/3); built from the model's weights once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .lean_forward import LeanForward, after_attention, attend, heads_out, qkv, rms_norm


@dataclass
class CleanRun:
    """The clean sentences' residual stream after the last block, and every block's keys and
    values (after norm and rotary), which the edited windows attend to."""

    final: Float[Tensor, "batch pos d_model"]
    keys: list[Float[Tensor, "batch kv_head pos d_head"]]
    values: list[Float[Tensor, "batch kv_head pos d_head"]]


class LeanResume:
    """Blocks `first` to the last of a Gemma-2/3 `HookedTransformer` (see `lean_forward`), fed
    the residual stream before block `first` (``blocks.{first - 1}.hook_resid_post``)."""

    def __init__(self, model, first: int):
        self._fwd = LeanForward(model, model.cfg.n_layers - 1, first=first)

    def clean(self, acts: Float[Tensor, "batch pos d_model"]) -> CleanRun:
        """The blocks over whole sequences (right-padded rows are fine: attention is causal)."""
        fwd = self._fwd
        n = acts.shape[1]
        rotary = {kind: fwd._rotary_table(kind, n) for kind in fwd._rotary}
        local = fwd._local_mask(n)
        x = acts.clone()
        keys, values = [], []
        for lay in fwd.layers:
            q, k, v = qkv(rms_norm(x, lay.ln1, fwd.shape.eps), lay, fwd.shape,
                          *rotary[lay.attn_type])
            keys.append(k)
            values.append(v)
            z = attend(q, k, v, lay, fwd.shape, local if lay.attn_type == "local" else None)
            x = after_attention(x, heads_out(z, lay), lay, fwd.shape)
        return CleanRun(x, keys, values)

    def windows(self, clean: CleanRun, rows: Int[Tensor, " copies"],
                acts: Float[Tensor, "copies window d_model"], at: Int[Tensor, "copies window"],
                ) -> Float[Tensor, "copies window d_model"]:
        """The residual stream after the last block of edited copies of clean sentences, copy c
        one of sentence ``rows[c]`` (copies of different sentences of one clean run share the
        call, so the matmuls are large), at positions `at` (each copy's consecutive positions,
        from where its edit starts; positions past the sentence are padding, their outputs
        meaningless), given the copies' activations `acts` there. Before ``at[c, 0]`` copy c is
        the clean sentence."""
        fwd = self._fwd
        n_keys = max(int(at.max()) + 1, clean.final.shape[1])
        key_pos = torch.arange(n_keys, device=at.device)
        keep = key_pos <= at[..., None]  # [copies, window, key]: causal
        local = keep & (key_pos > at[..., None] - (fwd.window or n_keys))
        rotary = {}
        for kind in fwd._rotary:
            cos, sin = fwd._rotary_table(kind, n_keys)  # [pos, 1, d_head]
            rotary[kind] = (cos[at], sin[at])  # [copies, window, 1, d_head]
        x = acts.clone()
        for i, lay in enumerate(fwd.layers):
            q, k, v = qkv(rms_norm(x, lay.ln1, fwd.shape.eps), lay, fwd.shape,
                          *rotary[lay.attn_type])
            mask = local if lay.attn_type == "local" else keep
            z = attend(q, _spliced(clean.keys[i], rows, k, at, n_keys),
                       _spliced(clean.values[i], rows, v, at, n_keys), lay, fwd.shape,
                       mask[:, None])
            x = after_attention(x, heads_out(z, lay), lay, fwd.shape)
        return x


def _spliced(clean: Float[Tensor, "batch kv_head pos d_head"], rows: Int[Tensor, " copies"],
             own: Float[Tensor, "copies kv_head window d_head"], at: Int[Tensor, "copies window"],
             n_keys: int) -> Float[Tensor, "copies kv_head key d_head"]:
    """Per copy, its sentence's clean keys (or values) with its own written over its window's
    positions."""
    out = clean.index_select(0, rows)
    if n_keys > out.shape[2]:
        out = torch.nn.functional.pad(out, (0, 0, 0, n_keys - out.shape[2]))
    heads, d = own.shape[1], own.shape[3]
    return out.scatter_(2, at[:, None, :, None].expand(-1, heads, -1, d), own)
