"""A lean, inference-only forward to `blocks.L.hook_resid_post` for Gemma-2/Gemma-3 models.

Extraction spends all of its time in the forward pass. TransformerLens adds, per layer, copies of
every weight (`W.T.contiguous()`, einops rearranges), per-head einsums, hook points, an explicit
attention pattern and many small elementwise ops: about 11% of a CPU profile, more on a GPU where
the matmuls are cheap. This module runs the same math from the weights of an already-loaded
`HookedTransformer`, prepared once: Q, K and V in one matmul, gate and up projections in one
matmul, norms and rotary applied to Q and K together, and `scaled_dot_product_attention` when
no soft-cap is needed; with `compile`, each block goes through `torch.compile`, which fuses the
elementwise work. Measured (README, "Speed and size"): on this project's 2-core CPU, Gemma-3-270M
in float32, about 1.2x TransformerLens' forward (it is then ~88% matmul); on an H200, a
Gemma-2-2B-shaped model in bfloat16, 33% model-FLOP utilisation against TransformerLens' 27%,
and 50% compiled.

The weights come from the TL model after TL's own conversion (Gemma's sqrt(d_model) embedding
scale is folded into `W_E`, the RMSNorm weights already hold the `+1`), so nothing of the HF
checkpoint format is re-implemented here, and the rotary tables are TL's own.

Supported: what TL builds for Gemma-2 and Gemma-3 (`Gemma2ForCausalLM`, `Gemma3ForCausalLM`):
RMS norms before and after attention and MLP (`RMS` or weight-folded `RMSPre`), rotary over the
full head, per-layer rotary base (`rotary_base_local` on local layers), grouped-query attention,
QK norm, attention soft-cap, sliding-window ("local") layers, gated `gelu_pytorch_tanh` MLP and
any nonzero biases. `lean_forward_for` returns None for anything else, so callers fall back to
TransformerLens. Inputs are right-padded token batches, run without a padding mask: attention
is causal, so real tokens never see the padding (TL masks pad tokens when the tokenizer pads on
the left, as Gemma's does; for real tokens that changes nothing).

It does not run the model's hooks or spliced-in SAEs (it refuses a model that has any), and
copies the block weights when built (the embedding is shared): a change to the TL model's
blocks afterwards is not seen (build again).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

ARCHITECTURES = frozenset({"Gemma2ForCausalLM", "Gemma3ForCausalLM"})
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def _refusal(model, hook: str) -> str | None:
    """Why the lean forward cannot stand in for `model` up to `hook` (None: it can)."""
    match = _RESID_POST.match(hook)
    cfg = getattr(model, "cfg", None)
    if cfg is None or not (hasattr(model, "blocks") and hasattr(model, "embed")):
        return "not a HookedTransformer"
    if match is None or int(match.group(1)) >= cfg.n_layers:
        return f"hook {hook!r} is not a blocks.N.hook_resid_post of this model"
    checks = {
        "architecture": cfg.original_architecture in ARCHITECTURES,
        "RMS norms": cfg.normalization_type in ("RMS", "RMSPre"),
        "norms before and after": cfg.use_normalization_before_and_after,
        "full-head rotary": (cfg.positional_embedding_type == "rotary"
                             and cfg.rotary_dim == cfg.d_head),
        "gated gelu_pytorch_tanh MLP": cfg.gated_mlp and cfg.act_fn == "gelu_pytorch_tanh",
        "causal sequential blocks": (cfg.attention_dir == "causal" and not cfg.attn_only
                                     and not cfg.parallel_attn_mlp),
        # options that change the math and that this module does not implement
        "no other variants": not (cfg.post_embedding_ln or cfg.num_experts or cfg.load_in_4bit
                                  or cfg.clip_qkv is not None or cfg.use_logn_attn
                                  or cfg.use_dynamic_ntk_rope or cfg.use_attention_sinks),
        "one device": cfg.n_devices == 1,
        "weights in cfg.dtype": model.embed.W_E.dtype == cfg.dtype,
        # hooks and SAEs on the model would be silently skipped
        "no SAEs attached": not getattr(model, "acts_to_saes", None),
        "no hooks attached": not any(hp._forward_hooks or hp._forward_pre_hooks
                                     for hp in model.hook_dict.values()),
    }
    failed = [name for name, ok in checks.items() if not ok]
    return f"unsupported: {', '.join(failed)}" if failed else None


def lean_forward_for(model, hook: str | Sequence[str],
                     compile: bool = False) -> LeanForward | None:  # noqa: A002
    """A lean forward from `model`'s current weights giving the activations at `hook` (at the
    deepest of several, and any of them through `LeanForward.run`), or None when `model` or a
    hook is outside what it implements (see the module docstring)."""
    hooks = [hook] if isinstance(hook, str) else list(hook)
    if not hooks or any(_refusal(model, h) is not None for h in hooks):
        return None
    return LeanForward(model, max(resid_post_layer(h) for h in hooks), compile)


def lean_supports(model, hook: str) -> bool:
    """Whether the lean forward can stand in for TransformerLens at `hook` of `model`."""
    return _refusal(model, hook) is None


def resid_post_layer(hook: str) -> int:
    """L of `blocks.L.hook_resid_post`."""
    return int(_RESID_POST.match(hook).group(1))


@dataclass(frozen=True)
class _Layer:
    """One block's weights in the layout the lean forward multiplies by ([out, in] for
    `F.linear`); None for a norm weight folded away (RMSPre) or a bias that is all zero."""

    attn_type: str  # "global" or "local" (sliding window)
    attn_scale: float  # scores are divided by this
    ln1: Tensor | None
    ln1_post: Tensor
    w_qkv: Tensor  # [(n_heads + 2 n_kv_heads) d_head, d_model]
    b_qkv: Tensor | None
    qk_norm: Tensor | None  # [n_heads + n_kv_heads, d_head]: q_norm for q heads, then k_norm
    w_o: Tensor  # [d_model, n_heads d_head]
    b_o: Tensor | None
    ln2: Tensor | None
    ln2_post: Tensor
    w_gate_in: Tensor  # [2 d_mlp, d_model]: gate rows, then in (up) rows
    b_in: Tensor | None
    w_out: Tensor  # [d_model, d_mlp]
    b_out: Tensor | None


def _flat_heads(w: Tensor) -> Tensor:
    """[head, d_model, d_head] -> [(head d_head), d_model], TL's own order for Q/K/V."""
    return w.permute(0, 2, 1).reshape(-1, w.shape[1])


def _nonzero(*biases: Tensor) -> Tensor | None:
    flat = torch.cat([b.reshape(-1) for b in biases])
    return flat.clone() if flat.any() else None


def _layer(block, cfg) -> _Layer:
    attn, mlp = block.attn, block.mlp
    grouped = cfg.n_key_value_heads is not None
    w_k, w_v = (attn._W_K, attn._W_V) if grouped else (attn.W_K, attn.W_V)
    b_k, b_v = (attn._b_K, attn._b_V) if grouped else (attn.b_K, attn.b_V)
    qk_norm = None
    if cfg.use_qk_norm:
        n_kv = w_k.shape[0]
        qk_norm = torch.cat([attn.q_norm.w.expand(cfg.n_heads, -1),
                             attn.k_norm.w.expand(n_kv, -1)]).contiguous()
    rms = cfg.normalization_type == "RMS"
    return _Layer(
        attn_type=attn.attn_type,
        attn_scale=float(attn.attn_scale),
        ln1=block.ln1.w.clone() if rms else None,
        ln1_post=block.ln1_post.w.clone(),
        w_qkv=torch.cat([_flat_heads(attn.W_Q), _flat_heads(w_k), _flat_heads(w_v)]).contiguous(),
        b_qkv=_nonzero(attn.b_Q, b_k, b_v),
        qk_norm=qk_norm,
        # TL: "head_index d_head d_model -> d_model (head_index d_head)"
        w_o=attn.W_O.permute(2, 0, 1).reshape(cfg.d_model, -1).contiguous(),
        b_o=_nonzero(attn.b_O),
        ln2=block.ln2.w.clone() if rms else None,
        ln2_post=block.ln2_post.w.clone(),
        w_gate_in=torch.cat([mlp.W_gate.T, mlp.W_in.T]).contiguous(),
        b_in=_nonzero(mlp.b_in),
        w_out=mlp.W_out.T.contiguous(),
        b_out=_nonzero(mlp.b_out),
    )


def rms_norm(x: Tensor, w: Tensor | None, eps: float) -> Tensor:
    """TL's RMSNorm: normalise in float32 (at least), cast back, then scale in the model dtype."""
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    y = (xf / xf.pow(2).mean(-1, keepdim=True).add_(eps).sqrt_()).to(x.dtype)
    return y if w is None else y.mul_(w)


@dataclass(frozen=True)
class _Shape:
    """The model's constants that the block function reads: the same for every block and every
    `LeanForward` of a model, so a compiled block is traced once and reused."""

    n_heads: int
    n_kv_heads: int
    d_head: int
    eps: float
    soft_cap: float | None


class LeanForward:
    """The residual stream after block `layer` of a Gemma-2/3 `HookedTransformer`, computed like
    `blocks.{layer}.hook_resid_post` with fused weights (build it with `lean_forward_for`).
    With `compile`, each block runs through `torch.compile` (fused norms, rotary and GELU)."""

    def __init__(self, model, layer: int, compile: bool = False,  # noqa: A002 (torch's word)
                 first: int = 0):
        # first > 0: only blocks first..layer are kept (a forward resumed from a hook, see
        # `lean_resume`); `run` then refuses, as it starts at the embedding.
        cfg = model.cfg
        self.first = first
        self.window = cfg.window_size
        self.n_ctx = cfg.n_ctx
        cap = cfg.attn_scores_soft_cap
        self.shape = _Shape(cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads, cfg.d_head,
                            float(cfg.eps), float(cap) if cap is not None and cap > 0 else None)
        self._block = _compiled_block() if compile else _block
        blocks = list(model.blocks)[first: layer + 1]
        with torch.no_grad():
            # not copied: the embedding is the largest tensor (Gemma's 256k vocabulary), and a
            # lookup needs no other layout
            self.w_e = model.embed.W_E.detach()
            self.layers = [_layer(block, cfg) for block in blocks]
        # TL computes the rotary tables per attention type (the base, and any rotary scaling,
        # differ between local and global layers); reuse its code and its current tables.
        self._rotary_attn = {b.attn.attn_type: b.attn for b in blocks}
        self._rotary: dict[str, tuple[Tensor, Tensor]] = {
            kind: (attn.rotary_cos.detach().clone(), attn.rotary_sin.detach().clone())
            for kind, attn in self._rotary_attn.items()}

    @property
    def device(self) -> torch.device:
        return self.w_e.device

    @property
    def dtype(self) -> torch.dtype:
        return self.w_e.dtype

    def __call__(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        last = len(self.layers) - 1
        return self.run(tokens, (last,))[last]

    @torch.inference_mode()
    def run(self, tokens: Int[Tensor, "batch pos"], layers: Collection[int],
            ) -> dict[int, Float[Tensor, "batch pos d_model"]]:
        """The residual stream after each block in `layers`, from one pass to the deepest (the
        same numbers as a pass that stops at each)."""
        if self.first:
            raise ValueError(f"this forward starts at block {self.first}, not at the embedding")
        tokens = tokens.to(self.device)
        if tokens.ndim == 1:
            tokens = tokens[None]
        deepest = max(layers)
        if deepest >= len(self.layers):
            raise ValueError(f"layer {deepest} is past this forward's last ({len(self.layers) - 1})")
        n_pos = tokens.shape[1]
        rotary = {kind: self._rotary_table(kind, n_pos) for kind in self._rotary}
        keep = self._local_mask(n_pos)
        x = F.embedding(tokens, self.w_e)
        out = {}
        for i, lay in enumerate(self.layers[: deepest + 1]):
            x = self._block(x, lay, self.shape, *rotary[lay.attn_type],
                            keep if lay.attn_type == "local" else None)
            if i in layers:  # blocks update x in place: keep a copy unless it is the last
                out[i] = x if i == deepest else x.clone()
        return out

    def _rotary_table(self, kind: str, n_pos: int) -> tuple[Tensor, Tensor]:
        cos, sin = self._rotary[kind]
        if n_pos > cos.shape[0]:  # grown like TL does, from TL's own formula
            if n_pos > self.n_ctx:
                raise ValueError(f"{n_pos} positions exceed the model's n_ctx {self.n_ctx}")
            attn = self._rotary_attn[kind]
            sin, cos = attn.calculate_sin_cos_rotary(
                self.shape.d_head, min(self.n_ctx, max(n_pos, 2 * cos.shape[0])),
                base=attn._rotary_base(), dtype=self.dtype)
            cos, sin = cos.to(self.device), sin.to(self.device)
            self._rotary[kind] = (cos, sin)
        # [pos, 1, d_head]: broadcast over batch and heads of [batch, pos, head, d_head]
        return cos[:n_pos, None], sin[:n_pos, None]

    def _local_mask(self, n_pos: int) -> Tensor | None:
        """Which keys a query of a local layer attends to (True: kept), or None when the window
        covers the whole sequence and the causal mask is the same thing."""
        if "local" not in self._rotary or n_pos <= self.window:
            return None
        q = torch.arange(n_pos, device=self.device)[:, None]
        k = torch.arange(n_pos, device=self.device)[None, :]
        return (k <= q) & (k > q - self.window)


def _block(x: Tensor, lay: _Layer, shape: _Shape, cos: Tensor, sin: Tensor,
           local_keep: Tensor | None) -> Tensor:
    """One transformer block on the residual stream `x` (updated in place and returned)."""
    attn = _attention(rms_norm(x, lay.ln1, shape.eps), lay, shape, cos, sin, local_keep)
    return after_attention(x, attn, lay, shape)


def after_attention(x: Tensor, attn: Tensor, lay: _Layer, shape: _Shape) -> Tensor:
    """The rest of a block once its attention output `attn` is known (`x` updated in place)."""
    x = x.add_(rms_norm(attn, lay.ln1_post, shape.eps))
    return x.add_(rms_norm(mlp(rms_norm(x, lay.ln2, shape.eps), lay), lay.ln2_post, shape.eps))


@functools.cache
def _compiled_block():
    """`_block` compiled once per process: every block and every `LeanForward` of a model meet
    the same guards. Batch and length turn dynamic at their first change (torch's automatic
    dynamic shapes) while the model's constants in `_Shape` stay static."""
    return torch.compile(_block)


def qkv(x: Tensor, lay: _Layer, shape: _Shape, cos: Tensor, sin: Tensor,
        ) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values [batch, head, pos, d_head] of the normed stream `x`, QK norm and
    rotary applied (`cos`, `sin` broadcast over [batch, pos, head, d_head])."""
    batch, n_pos, _ = x.shape
    n_q, n_kv, d = shape.n_heads, shape.n_kv_heads, shape.d_head
    qkv_ = F.linear(x, lay.w_qkv, lay.b_qkv).view(batch, n_pos, n_q + 2 * n_kv, d)
    qk, v = qkv_[:, :, : n_q + n_kv], qkv_[:, :, n_q + n_kv :]
    if lay.qk_norm is not None:
        qk = rms_norm(qk, lay.qk_norm, shape.eps)
    half = d // 2
    # TL's rotation, x * cos + rotate_half(x) * sin, on queries and keys at once
    flipped = torch.cat([-qk[..., half:], qk[..., :half]], dim=-1)
    qk = (qk * cos).addcmul_(flipped, sin)
    return qk[:, :, :n_q].transpose(1, 2), qk[:, :, n_q:].transpose(1, 2), v.transpose(1, 2)


def _attention(x: Tensor, lay: _Layer, shape: _Shape, cos: Tensor, sin: Tensor,
               local_keep: Tensor | None) -> Tensor:
    return heads_out(attend(*qkv(x, lay, shape, cos, sin), lay, shape, local_keep), lay)


def attend(q: Tensor, k: Tensor, v: Tensor, lay: _Layer, shape: _Shape,
           keep: Tensor | None) -> Tensor:
    """Per-head attention results [batch, head, query, d_head]. `keep`: which keys each query
    sees ([query, key], or [batch, 1, query, key]); None: causal, queries and keys at the same
    positions."""
    if shape.soft_cap is None:
        # A boolean mask only where it is needed: is_causal lets CUDA pick its flash kernel.
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, is_causal=keep is None, scale=1.0 / lay.attn_scale,
            enable_gqa=shape.n_kv_heads != shape.n_heads)
    if keep is not None and keep.ndim == 4:  # the grouped heads' axis
        keep = keep[:, :, None]
    return softcapped_attention(q, k, v, lay.attn_scale, shape.soft_cap, keep)


def heads_out(z: Tensor, lay: _Layer) -> Tensor:
    """The attention output [batch, pos, d_model] of per-head results [batch, head, pos, d]."""
    batch, n_q, n_pos, d = z.shape
    return F.linear(z.transpose(1, 2).reshape(batch, n_pos, n_q * d), lay.w_o, lay.b_o)


def softcapped_attention(q: Tensor, k: Tensor, v: Tensor, attn_scale: float, cap: float,
                         keep: Tensor | None) -> Tensor:
    """Gemma-2's attention: SDPA has no soft-cap, so the scores are made explicitly, with
    TL's operations in TL's order and dtype (scores in the model dtype: TL does not upcast
    them; PyTorch's softmax accumulates in float32 for bfloat16 inputs anyway). `keep`: which
    keys each query sees, broadcast over [batch, kv head, group, query, key]; None: causal,
    queries and keys at the same positions."""
    batch, n_q, n_pos, d = q.shape
    n_kv, n_keys = k.shape[1], k.shape[2]
    group = n_q // n_kv
    # Query heads sharing a KV head (TL's repeat_interleave order) are stacked along the
    # positions, so one batched matmul serves the group without copying K or V per head.
    grouped_q = q.reshape(batch, n_kv, group * n_pos, d)
    scores = torch.matmul(grouped_q, k.transpose(-1, -2)).view(batch, n_kv, group, n_pos, n_keys)
    scores = scores.div_(attn_scale).div_(cap).tanh_().mul_(cap)
    if keep is None:
        keep = torch.ones(n_pos, n_keys, dtype=torch.bool, device=q.device).tril_()
    scores = scores.masked_fill_(~keep, float("-inf"))
    pattern = torch.softmax(scores, dim=-1).view(batch, n_kv, group * n_pos, n_keys)
    return torch.matmul(pattern, v).view(batch, n_q, n_pos, d)


def mlp(x: Tensor, lay: _Layer) -> Tensor:
    gate, up = F.linear(x, lay.w_gate_in).chunk(2, dim=-1)
    hidden = F.gelu(gate, approximate="tanh").mul_(up)
    if lay.b_in is not None:
        hidden = hidden.add_(lay.b_in)
    return F.linear(hidden, lay.w_out, lay.b_out)
