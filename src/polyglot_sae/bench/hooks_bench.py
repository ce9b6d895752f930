"""K hooks in one forward pass against K separate passes, as the extract job runs them.

One job of the hook-point sweep writes every SAE's table of a shard from one pass to the deepest
hook (`extract.write_sparse_tables`); before, each SAE's job ran the model to its own hook. Both
are timed here on the same sentences (random token ids, lengths like verses), with a JumpReLU
SAE per hook, and the tables compared bit for bit. The expected ratio is the separate passes'
summed depth over the deepest (six hooks spread evenly over 18 layers: 63/18 = 3.5x) less what
the SAEs and the writing cost, which both paths pay alike.

Model: the converted Gemma-3-270M folder when given (``--model resources/models/gemma-3-270m``),
else a random model of its shape (or ``--layers``/``--d-model`` smaller, for a smoke test).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from polyglot_sae.activations.extract import (ExtractConfig, Target, write_sparse_tables)
from polyglot_sae.activations.forward import Sentence


def _model(args):
    if args.model:
        from polyglot_sae.model.load import load_model

        return load_model(args.model)
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    cfg = get_pretrained_model_config("google/gemma-3-270m").to_dict()
    for derived in ("n_params", "d_vocab_out", "model_name"):
        cfg.pop(derived)
    if args.layers:
        cfg.update(n_layers=args.layers, attn_types=cfg["attn_types"][: args.layers])
    if args.d_model:
        cfg.update(d_model=args.d_model, d_mlp=4 * args.d_model, n_heads=4, d_head=16,
                   rotary_dim=16, n_key_value_heads=1, d_vocab=4096)
    cfg.update(init_weights=True, seed=0, tokenizer_name=None)
    return HookedTransformer(HookedTransformerConfig(**cfg)).eval()


def _saes(model, hooks, d_sae: int):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    saes = []
    for i, hook in enumerate(hooks):
        torch.manual_seed(i)
        cfg = JumpReLUSAEConfig(d_in=model.cfg.d_model, d_sae=d_sae)
        cfg.metadata.hook_name = hook
        sae = JumpReLUSAE(cfg)
        with torch.no_grad():
            sae.W_enc.normal_(0, 1.0 / model.cfg.d_model**0.5)
            sae.W_dec.copy_(sae.W_enc.T)
            sae.threshold.fill_(1.5)  # a few percent fire on a random model's residual
        saes.append(sae)
    return saes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a converted model folder (else a random Gemma-3-270M shape)")
    ap.add_argument("--hooks", type=int, default=6, help="hooks, spread evenly over the layers")
    ap.add_argument("--pairs", type=int, default=100, help="sentence pairs (two languages)")
    ap.add_argument("--d-sae", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layers", type=int, help="smoke test: fewer layers")
    ap.add_argument("--d-model", type=int, help="smoke test: a narrower model")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = _model(args)
    n_layers = model.cfg.n_layers
    layers = sorted({round((i + 1) * n_layers / args.hooks) - 1 for i in range(args.hooks)})
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    saes = _saes(model, hooks, args.d_sae)
    rng = np.random.default_rng(0)
    sentences = [Sentence(i // 2, ("en", "es")[i % 2],
                          [2, *rng.integers(3, model.cfg.d_vocab, rng.integers(15, 60)).tolist()])
                 for i in range(2 * args.pairs)]
    cfg = ExtractConfig(batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        def run(groups) -> tuple[float, list[pl.DataFrame]]:
            t0 = time.perf_counter()
            for group in groups:
                write_sparse_tables(model, [Target(saes[k], hooks[k], Path(tmp) / f"{k}.parquet",
                                                   {}) for k in group],
                                    sentences, cfg, special={0, 1, 2})
            seconds = time.perf_counter() - t0
            return seconds, [pl.read_parquet(Path(tmp) / f"{k}.parquet")
                             for group in groups for k in group]

        run([[0]])  # warm-up: first-call allocations and kernels
        separate_s, separate = run([[k] for k in range(len(hooks))])
        together_s, together = run([list(range(len(hooks)))])
    assert all(a.equals(b) for a, b in zip(separate, together)), "tables differ"
    depth = sum(layer + 1 for layer in layers) / (layers[-1] + 1)
    rows = sum(t.height for t in together)
    print(f"model: {args.model or 'random Gemma-3-270M shape'} ({n_layers} layers, d_model "
          f"{model.cfg.d_model}); threads {torch.get_num_threads()}")
    print(f"hooks: {', '.join(hooks)}; {2 * args.pairs} sentences; SAEs d_sae {args.d_sae}; "
          f"{rows:,} sparse rows in all; tables bit-identical")
    print(f"{len(hooks)} separate passes: {separate_s:.2f} s; one pass: {together_s:.2f} s; "
          f"ratio {separate_s / together_s:.2f}x (summed depth over deepest: {depth:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
