"""Extraction at Gemma-2-2B scale: tokens/s and model-FLOP utilisation (MFU) of the engine.

    python -m polyglot_sae.bench gpu_extract                        # CUDA: 26 layers, hook 20, bf16
    python -m polyglot_sae.bench gpu_extract --layers 2 --pairs 8   # a CPU smoke run, tiny

The model is TransformerLens' HookedTransformer built from its own ``google/gemma-2-2b`` config
(no hub access; random weights), the SAE a 16k-latent sae-lens JumpReLUSAE at
``blocks.20.hook_resid_post`` (the seed's GemmaScope SAE's shape) with random encoder weights and
per-latent thresholds set on a calibration batch so that each token fires ``--l0`` latents on
average. Sentences are random token ids with BOS first, lengths log-normal around 32 tokens
(clipped to 8..128), like the seed's OPUS Books sentences; pairs of two sentences.

Timed, for each forward (``transformer_lens``; ``lean``, the default; ``lean_compiled``, with
``extract.compile``): ``extract.write_sparse_activations`` as the extract job runs it (forward to
the hook layer, SAE on the real tokens, nonzero, each block's rows sorted and written to Parquet by
the writer thread while the next block runs) and, separately, the forward passes alone on the same
batches, after a warm-up on two batch shapes (the compile, for ``lean_compiled``). Printed first:
the lean and TransformerLens activations at the hook against float32 TransformerLens. Model FLOPs:
2 x the parameters of the blocks run per token (BOS included, padding not), attention 4 x n_heads x
d_head per causal query-key pair, and the SAE encoder 2 x d_in x d_sae per real token. MFU = FLOPs
/ seconds / ``--peak-tflops`` (default on CUDA: 989, the H100 SXM's dense bf16 peak).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polyglot_sae.activations.extract import (ExtractConfig, sparse_activations,
                                              write_sparse_activations)
from polyglot_sae.activations.forward import Sentence, length_batches, padded_tokens
from polyglot_sae.model.lean_forward import lean_forward_for
from polyglot_sae.model.load import stop_layer

H100_BF16_TFLOPS = 989.0
PAD, EOS, BOS = 0, 1, 2  # Gemma's ids


def build_model(layers: int | None, dtype: torch.dtype, device: str, d_vocab: int | None = None,
                d_model: int | None = None, d_mlp: int | None = None):
    """Gemma-2-2B's shape from TransformerLens' offline config table, random weights (a smaller
    vocabulary and widths only for smoke runs: the 256k embedding alone is 2.4 GB in float32)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    cfg = get_pretrained_model_config("google/gemma-2-2b", dtype=dtype).to_dict()
    cfg.update(tokenizer_name=None, init_weights=True, device=device, seed=0)
    if layers is not None:
        cfg["n_layers"] = layers
    if d_vocab is not None:
        cfg.update(d_vocab=d_vocab, d_vocab_out=d_vocab)
    cfg.update({k: v for k, v in (("d_model", d_model), ("d_mlp", d_mlp)) if v is not None})
    with torch.device(device):
        model = HookedTransformer(HookedTransformerConfig.from_dict(cfg))
    return model.eval()


def build_sae(d_in: int, d_sae: int, hook: str, dtype: torch.dtype, device: str):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    cfg = JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, dtype=str(dtype).removeprefix("torch."),
                            device=device)
    cfg.metadata.hook_name = hook
    sae = JumpReLUSAE(cfg)
    torch.manual_seed(1)
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    return sae.eval()


def tl_acts(model, hook: str, tokens: torch.Tensor) -> torch.Tensor:
    """TransformerLens' activations at `hook`, the model stopped at the hook's layer."""
    captured = {}

    def keep(act, hook):  # noqa: ARG001
        captured["a"] = act

    with torch.inference_mode(), model.hooks(fwd_hooks=[(hook, keep)]):
        model(tokens, stop_at_layer=stop_layer(hook))
    return captured["a"]


def inside_mask(sentences: list[Sentence], width: int) -> torch.Tensor:
    """[sentence, position]: True inside each sentence (not padding)."""
    return torch.arange(width) < torch.tensor([len(s.token_ids) for s in sentences])[:, None]


def calibrate_thresholds(model, sae, hook: str, sentences: list[Sentence], l0: float) -> None:
    """Per-latent thresholds at the (1 - l0/d_sae) quantile of its pre-activations on these
    sentences' non-BOS tokens: each latent fires on that share of tokens, so L0 ~ l0."""
    tokens = padded_tokens(sentences, PAD).to(model.cfg.device)
    keep = inside_mask(sentences, tokens.shape[1])
    keep[:, 0] = False  # BOS
    x = tl_acts(model, hook, tokens)[keep.to(tokens.device)].float()
    pre = (x - sae.b_dec.float()) @ sae.W_enc.float() + sae.b_enc.float()
    k = max(1, min(pre.shape[0], round(pre.shape[0] * (1 - l0 / sae.cfg.d_sae))))
    with torch.no_grad():
        sae.threshold.copy_(pre.kthvalue(k, dim=0).values.clamp(min=0))


def random_sentences(n_pairs: int, d_vocab: int, seed: int) -> list[Sentence]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(32), 0.45, 2 * n_pairs)), 8, 128).astype(int)
    return [Sentence(i // 2, ("en", "es")[i % 2],
                     [BOS, *rng.integers(3, d_vocab, n - 1).tolist()])
            for i, n in enumerate(lengths)]


def model_flops(model, sae, stop: int, sentences: list[Sentence]) -> tuple[float, float]:
    """(FLOPs of the forward passes up to `stop`, FLOPs of the SAE encoder)."""
    params = sum(p.numel() for block in model.blocks[:stop] for p in block.parameters())
    lengths = np.array([len(s.token_ids) for s in sentences], dtype=np.float64)
    pairs = float((lengths * (lengths + 1) / 2).sum())  # causal query-key pairs
    attention = 4 * model.cfg.n_heads * model.cfg.d_head * pairs * stop
    sae_tokens = float((lengths - 1).sum())
    return 2 * params * lengths.sum() + attention, 2 * sae.cfg.d_in * sae.cfg.d_sae * sae_tokens


def _print_agreement(model, lean, hook: str, sentences: list[Sentence], device: str) -> None:
    """The lean forward's and TransformerLens' hook activations on real tokens, each against
    TransformerLens in float32 (and against each other): both should err alike."""
    tokens = padded_tokens(sentences, PAD).to(device)
    real = inside_mask(sentences, tokens.shape[1]).to(device)
    got = {"TransformerLens": tl_acts(model, hook, tokens)[real].float(),
           "lean": lean(tokens)[real].float()}
    pairs = [("lean", got["TransformerLens"], "TransformerLens")]
    if model.cfg.dtype != torch.float32:
        exact = tl_acts(copy.deepcopy(model).to(torch.float32, print_details=False), hook,
                        tokens)[real].float()
        pairs = [("lean", exact, "float32 TransformerLens"),
                 ("TransformerLens", exact, "float32 TransformerLens"), *pairs]
    for name, ref, ref_name in pairs:
        rel = ((got[name] - ref).norm(dim=-1) / ref.norm(dim=-1)).cpu()
        print(f"{name} vs {ref_name} at {hook}, {int(real.sum())} real tokens: relative L2 "
              f"error per token median {rel.median():.2e}, max {rel.max():.2e}", flush=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--layers", type=int, default=None, help="n_layers (default 26)")
    parser.add_argument("--d-vocab", type=int, default=None,
                        help="vocabulary size (default Gemma-2's 256,000; smaller for smoke runs)")
    parser.add_argument("--d-model", type=int, default=None,
                        help="residual width (default Gemma-2-2B's 2,304; smaller for smoke runs)")
    parser.add_argument("--d-mlp", type=int, default=None,
                        help="MLP width (default Gemma-2-2B's 9,216; smaller for smoke runs)")
    parser.add_argument("--hook-layer", type=int, default=20, help="capped at n_layers - 1")
    parser.add_argument("--d-sae", type=int, default=16_384)
    parser.add_argument("--l0", type=float, default=70.0, help="target latents per token")
    parser.add_argument("--pairs", type=int, default=8192)
    parser.add_argument("--batch-tokens", type=int, default=16_384,
                        help="tokens per forward pass, padding included")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help=f"the device's peak (default on CUDA: {H100_BF16_TFLOPS:g}, the "
                             "H100 SXM's bf16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forward", action="append",
                        choices=["transformer_lens", "lean", "lean_compiled"],
                        help="the forward passes timed (repeatable; default: all three)")
    args = parser.parse_args(argv)
    device, dtype = args.device, getattr(torch, args.dtype)
    peak = args.peak_tflops or (H100_BF16_TFLOPS if device.startswith("cuda") else None)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"

    t0 = time.perf_counter()
    model = build_model(args.layers, dtype, device, args.d_vocab, args.d_model, args.d_mlp)
    hook_layer = min(args.hook_layer, model.cfg.n_layers - 1)
    hook = f"blocks.{hook_layer}.hook_resid_post"
    stop = hook_layer + 1
    sae = build_sae(model.cfg.d_model, args.d_sae, hook, dtype, device)
    sentences = random_sentences(args.pairs, model.cfg.d_vocab, args.seed)
    calibrate_thresholds(model, sae, hook,
                         random_sentences(min(64, args.pairs), model.cfg.d_vocab, args.seed + 1),
                         args.l0)
    print(f"{name}, {args.dtype}: Gemma-2-2B shape, {model.cfg.n_layers} layers (run to {stop}), "
          f"d_model {model.cfg.d_model}, d_mlp {model.cfg.d_mlp}; JumpReLU SAE {args.d_sae} at "
          f"{hook}; built in {time.perf_counter() - t0:.1f} s", flush=True)

    special = {PAD, EOS, BOS}
    lengths = [len(s.token_ids) for s in sentences]
    batches = length_batches(lengths, 32, args.batch_tokens)
    n_tokens, n_real = sum(lengths), sum(lengths) - len(sentences)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    flops_model, flops_sae = model_flops(model, sae, stop, sentences)
    print(f"{len(sentences):,} sentences, {n_tokens:,} tokens ({n_real:,} real, BOS excluded), "
          f"{len(batches)} batches of <= {args.batch_tokens:,} tokens, padding efficiency "
          f"{n_tokens / padded:.3f}", flush=True)
    lean = lean_forward_for(model, hook)
    _print_agreement(model, lean, hook, sentences[:64], device)
    forwards = {"transformer_lens": lambda t: model(t, stop_at_layer=stop), "lean": lean,
                "lean_compiled": lean_forward_for(model, hook, compile=True)}
    for name in args.forward or list(forwards):
        cfg = ExtractConfig(batch_tokens=args.batch_tokens, dtype=args.dtype, device=device,
                            forward="transformer_lens" if name == "transformer_lens" else "lean",
                            compile=name == "lean_compiled")
        t0 = time.perf_counter()
        with torch.inference_mode():  # two shapes: a compiled forward turns dynamic
            for b in (batches[0], batches[-1]):
                forwards[name](padded_tokens([sentences[i] for i in b], PAD).to(device))
        sparse_activations(model, sae, hook, sentences[: 2 * min(args.pairs, 32)], cfg,
                           special=special)
        _sync(device)
        print(f"forward {name}: warm-up {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                forwards[name](padded_tokens([sentences[i] for i in b], PAD).to(device))
        _sync(device)
        forward_s = time.perf_counter() - t0

        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            rows = write_sparse_activations(model, sae, hook, sentences, cfg,
                                            Path(tmp) / "acts.parquet", {}, special=special)
            engine_s = time.perf_counter() - t0
        print(f"  L0 measured {rows / n_real:.1f}")
        for label, sec, flops in (("  forward only", forward_s, flops_model),
                                  ("  engine (forward, SAE, sparse rows written)", engine_s,
                                   flops_model + flops_sae)):
            mfu = f", MFU {flops / sec / (peak * 1e12):.1%} of {peak:g} TFLOP/s" if peak else ""
            print(f"{label}: {sec:.2f} s, {n_real / sec:,.0f} real tok/s, "
                  f"{flops / sec / 1e12:.2f} TFLOP/s{mfu}", flush=True)
        if device.startswith("cuda"):
            print(f"  peak GPU memory in the engine "
                  f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
