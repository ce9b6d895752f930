"""Benchmark of the logit-lens analysis on the default model's full vocabulary.

    python -m polyglot_sae.bench.logit_lens_bench                      # Gemma-3-270M, 2,048 features
    python -m polyglot_sae.bench.logit_lens_bench --d-sae 64           # a quick run
    python -m polyglot_sae.bench.logit_lens_bench --sae-dir resources/saes/NAME

With a prepared model folder the lens is the model's own (ln_final weight folded, 262,144 tokens,
the regex token sets built from its tokenizer) and the unembedding identity is checked on it;
without one, random W_U and gain of the real shapes (262,144 x 640) and random token sets stand
in. The decoder is the SAE's when ``--sae-dir`` is given, else random unit rows.

The analysis includes the enrichment's direction null (``EnrichmentConfig.null_directions``
random directions, each as costly as a feature). Prints wall time, peak RSS during the analysis
(sampled from /proc/self/statm every 10 ms) next to the RSS before it (the model's W_U is
resident throughout), and the size of the one dense [d_sae, d_vocab] float32 matrix the
analysis never builds.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from polyglot_sae.logit_lens import core as ll
from polyglot_sae.logit_lens import token_sets as ts
from .null_bench import _peak_gib, _rss, _RssWatch

D_MODEL, D_VOCAB = 640, 262_144  # Gemma-3-270M


def _real_lens(model_dir: Path):
    from polyglot_sae.model.load import load_model

    model = load_model(model_dir)
    lens = ll.unembed_lens(model)
    vocab = ts.vocabulary(model.tokenizer, lens.d_vocab)
    x = torch.randn(8, lens.d_model) * 100
    with torch.no_grad():
        expected = model.unembed(model.ln_final(x[None]))[0]
        got = ll.normalise(lens, x) @ ll.effective_unembed(lens) + lens.bias
    err = float((got - expected).abs().max() / expected.abs().max())
    print(f"identity unembed(ln_final(x)) = W_eff^T x/s(x) + b_eff on {model_dir}: max error "
          f"{err:.2e} of the largest logit; norm {lens.norm}, processing '{lens.processing}'")
    weights = model_dir / "model.safetensors"
    if lens.norm == "RMS" and weights.exists():
        from safetensors import safe_open

        with safe_open(weights, "pt") as f:
            if "model.norm.weight" in f.keys():
                hf = f.get_tensor("model.norm.weight").float()
                print(f"ln_final.w - (1 + HF norm.weight): max |diff| "
                      f"{float((lens.gain - 1 - hf).abs().max()):.2e} (the +1 is already in)")
    del model, expected, got
    gc.collect()
    return lens, vocab


def _random_lens(seed: int):
    g = torch.Generator().manual_seed(seed)
    W_U = torch.randn(D_MODEL, D_VOCAB, generator=g) / D_MODEL**0.5
    lens = ll.UnembedLens(W_U=W_U, gain=torch.rand(D_MODEL, generator=g) + 0.5, center=False,
                          bias=torch.zeros(D_VOCAB), eps=1e-6, norm="RMS",
                          processing="random stand-in", softcap=None)
    return lens, None


def _random_sets(d_vocab: int, seed: int) -> ts.TokenSets:
    rng = np.random.default_rng(seed)
    sizes = (100, 1_000, 10_000, 50_000, 130_000)
    masks = np.zeros((len(sizes), d_vocab), dtype=bool)
    for row, size in enumerate(sizes):
        masks[row, rng.choice(d_vocab, size, replace=False)] = True
    return ts.TokenSets(tuple(f"random_{s}" for s in sizes), masks, np.ones(d_vocab, dtype=bool))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("resources/models/gemma-3-270m"))
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--sae-dir", type=Path, default=None)
    parser.add_argument("--chunk-mib", type=int, default=ll.LensConfig().chunk_mib)
    parser.add_argument("--no-sets", action="store_true", help="statistics only, no enrichment")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    if (args.model_dir / "polyglot_model.json").exists():
        lens, vocab = _real_lens(args.model_dir)
        sets = None if args.no_sets else ts.regex_sets(vocab)
    else:
        print(f"{args.model_dir} is not a prepared model: random W_U/gain {D_MODEL} x {D_VOCAB}")
        lens, _ = _random_lens(args.seed)
        sets = None if args.no_sets else _random_sets(lens.d_vocab, args.seed)
    if args.sae_dir is not None:
        from polyglot_sae.model.saes import load_sae

        W_dec = load_sae(args.sae_dir).W_dec.detach().float()
    else:
        W_dec = torch.randn(args.d_sae, lens.d_model, generator=torch.Generator().manual_seed(args.seed))
        W_dec /= W_dec.norm(dim=1, keepdim=True)
    d_sae = W_dec.shape[0]
    t1 = time.perf_counter()
    n_tokens = int(sets.universe.sum()) if sets is not None else lens.d_vocab
    config = ll.LensConfig(chunk_mib=args.chunk_mib)
    block, step = ll.chunk_sizes(config, n_tokens)
    w_u_gib = lens.W_U.numel() * lens.W_U.element_size() / 2**30
    print(f"setup {t1 - t0:.1f} s; {d_sae:,} features x {n_tokens:,} tokens (vocab "
          f"{lens.d_vocab:,}), {block} features per block, {step} per step, "
          f"{len(sets.names) if sets is not None else 0} token sets; RSS before the analysis "
          f"{_rss() / 2**30:.2f} GiB (W_U {w_u_gib:.2f} GiB)", flush=True)

    before = _rss()
    with _RssWatch() as watch:
        t2 = time.perf_counter()
        result = ll.analyse(lens, W_dec, token_sets=sets, lens_config=config)
        t3 = time.perf_counter()
    dense = d_sae * lens.d_vocab * 4
    n_null = ll.EnrichmentConfig().null_directions if sets is not None else 0
    rows = d_sae + n_null
    print(f"analysis: {t3 - t2:.1f} s wall for {d_sae:,} features + {n_null} null directions "
          f"({rows / (t3 - t2):.1f} rows/s); peak RSS {watch.peak / 2**30:.2f} GiB during it "
          f"(+{(watch.peak - before) / 2**30:.2f} GiB over the {before / 2**30:.2f} GiB before); one "
          f"dense [{d_sae}, {lens.d_vocab}] float32 matrix would be {dense / 2**30:.2f} GiB; "
          f"process peak (getrusage) {_peak_gib():.2f} GiB")
    counts = result.stats["class"].value_counts().sort("class")
    print("classes: " + ", ".join(f"{c} {n}" for c, n in counts.iter_rows()))
    if result.enrichment is not None and result.enrichment.height:
        sig = result.enrichment.group_by("set_name", maintain_order=True).agg(
            (pl.col("q_greater").fill_null(1.0) < 0.05).sum().alias("token"),
            (pl.col("q_dir_greater").fill_null(1.0) < 0.05).sum().alias("direction"))
        print("features promoting each set at q < 0.05, token null / direction null: "
              + ", ".join(f"{s} {a}/{b}" for s, a, b in sig.iter_rows()))
    if result.provenance["skipped_sets"]:
        print(f"skipped sets: {result.provenance['skipped_sets']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
