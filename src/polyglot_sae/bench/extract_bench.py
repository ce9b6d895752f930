"""Extraction throughput against the seed-style path; lean forward and bfloat16 agreement.

    python -m polyglot_sae.bench extract                          # 200 scored pairs, default run
    python -m polyglot_sae.bench extract --pairs 40 --rounds 1    # a quick run
    python -m polyglot_sae.bench extract --agreement-pairs all    # + agreement on every scored pair

Four paths on the same pairs (the first N of the scored split, in file order), one process:

- seed: the seed's way (sae-lens' ``HookedSAETransformer.run_with_cache_with_saes`` with the SAE
  attached, the full model including the logits, the full cache), right-padded batches of 32 in
  corpus order, under ``torch.no_grad``, the dense SAE activations kept;
- float32 and bfloat16: ``extract.sparse_activations`` as the extract job runs it (model up to
  the hook layer by `lean_forward`, length-sorted batches, SAE on real tokens only, sparse
  sorted table out);
- transformer_lens: the same in float32 with TransformerLens' forward (``extract.forward:
  transformer_lens``), which shows what the lean forward adds.

Each path batches all the pairs as it would alone; ``--rounds`` interleaves them in time (round r
runs every rounds-th batch of each path, in a rotating order of the paths), so a change in machine
load hits each path alike. Throughput counts real tokens only (BOS, EOS and padding excluded), the
same number for every path. Agreement of bfloat16 with float32, and of the lean forward with
TransformerLens' (both float32), uses the pipeline's own code: `reduce.reduce_max` for the
per-(pair, lang, feature) maxima and `score.bilingual.score_features` (method exact, no permutations) for
the ranking. Prints the load average (`os.getloadavg`) at start and end and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from jaxtyping import Float

from ..atomic_io import write_parquet
from polyglot_sae.activations.extract import ExtractConfig, sparse_activations
from polyglot_sae.activations.forward import (Sentence, length_batches, pad_token_id,
                                              padded_tokens, tokenize)
from polyglot_sae.model.load import load_model, special_token_ids
from polyglot_sae.activations.reduce import reduce_max
from polyglot_sae.model.saes import load_sae
from polyglot_sae.score.bilingual import ScoreConfig, score_features
from .null_bench import _peak_gib

MODEL = "resources/models/gemma-3-270m"
SAE = "resources/saes/gemma-3-270m/l12-jumprelu-2k"
PAIRS = "results/bible-kjv-rv1909/split/score.parquet"
LANGS = ("en", "es")


def seed_style(model, sae, sentences: Sequence[Sentence],
               batch_size: int = 32) -> list[Float[torch.Tensor, "batch pos d_sae"]]:
    """The seed's extraction: every hook cached, logits computed, dense activations kept."""
    pad = pad_token_id(model)
    hook = f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"
    kept = []
    for start in range(0, len(sentences), batch_size):
        tokens = padded_tokens(sentences[start : start + batch_size], pad)
        with torch.no_grad():
            _, cache = model.run_with_cache_with_saes(tokens, saes=[sae])
        kept.append(cache[hook])
        del cache
    return kept


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _real_tokens(sentences: Sequence[Sentence], special: set[int]) -> int:
    return sum(sum(t not in special for t in s.token_ids) for s in sentences)


def agreement(ref: pl.DataFrame, other: pl.DataFrame, *, n_pairs: int, d_sae: int,
              workdir: Path) -> dict[str, float]:
    """`other` against `ref` (e.g. bfloat16 against float32): the max table and the exact-method
    ranking built from each."""
    tables = {}
    for name, acts in (("ref", ref), ("other", other)):
        path = write_parquet(acts, workdir / f"{name}.parquet",
                             {"n_pairs": n_pairs, "d_sae": d_sae, "langs": list(LANGS)})
        tables[name], _ = reduce_max([path])
    keys = ["pair_id", "lang", "feature_id"]
    joined = tables["ref"].join(tables["other"], on=keys, how="full", coalesce=True,
                                suffix="_other").fill_null(0.0)
    a, b = joined["value"].to_numpy(), joined["value_other"].to_numpy()
    both = (a > 0) & (b > 0)
    rel = np.abs(b[both] - a[both]) / a[both]
    out = {
        "rows_ref": int((a > 0).sum()), "rows_other": int((b > 0).sum()),
        "rows_both": int(both.sum()),
        "only_ref": int(((a > 0) & ~(b > 0)).sum()), "only_other": int((~(a > 0) & (b > 0)).sum()),
        "max_only": float(np.max(np.where(both, 0.0, np.maximum(a, b)))) if (~both).any() else 0.0,
        "max_abs": float(np.abs(b - a).max()), "max_value": float(a.max()),
        "rel_median": float(np.median(rel)), "rel_p99": float(np.quantile(rel, 0.99)),
        "rel_max": float(rel.max()),
    }
    scores = {name: score_features(t, n_pairs=n_pairs, d_sae=d_sae, langs=LANGS,
                                   config=ScoreConfig(method="exact"))
              for name, t in tables.items()}
    s_ref, s_other = scores["ref"], scores["other"]
    alive = (~s_ref["dead"] & ~s_other["dead"]).to_numpy()
    from scipy.stats import spearmanr

    out["alive_ref"] = int((~s_ref["dead"]).sum())
    out["alive_other"] = int((~s_other["dead"]).sum())
    out["alive_both"] = int(alive.sum())
    out["spearman"] = float(spearmanr(s_ref["bi_score"].to_numpy()[alive],
                                      s_other["bi_score"].to_numpy()[alive]).statistic)
    for k in (25, 100):
        top = [set(s.filter(pl.col("rank") < k)["feature_id"].to_list()) for s in (s_ref, s_other)]
        out[f"top{k}"] = len(top[0] & top[1])
    return out


def _print_agreement(name: str, g: dict[str, float], ref: str = "float32",
                     other: str = "bfloat16") -> None:
    print(f"agreement {other} vs {ref}, {name}:")
    print(f"  max table: {g['rows_ref']:,} rows in {ref}, {g['rows_other']:,} in {other}, "
          f"{g['rows_both']:,} in both; in one only: {g['only_ref']:,} {ref}, "
          f"{g['only_other']:,} {other} (largest such value {g['max_only']:.3g}, of a largest "
          f"max {g['max_value']:.3g})")
    print(f"  max |{other} - {ref}| over the union {g['max_abs']:.3g}; relative error on rows in "
          f"both: median {g['rel_median']:.2e}, 99th percentile {g['rel_p99']:.2e}, "
          f"max {g['rel_max']:.2e}")
    print(f"  scores (exact, no permutations): alive {g['alive_ref']} {ref}, {g['alive_other']} "
          f"{other}, {g['alive_both']} both; Spearman of bi_score over those "
          f"{g['spearman']:.4f}; top-100 overlap {g['top100']}/100, top-25 {g['top25']}/25")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=MODEL)
    parser.add_argument("--sae-dir", default=SAE)
    parser.add_argument("--pairs-file", default=PAIRS)
    parser.add_argument("--pairs", type=int, default=200, help="pairs timed (first N of the file)")
    parser.add_argument("--rounds", type=int, default=4, help="blocks the paths alternate over")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128, help="as in config.yaml")
    parser.add_argument("--no-bf16", action="store_true",
                        help="leave the bfloat16 path out (slow on CPUs without bf16 units)")
    parser.add_argument("--agreement-pairs", default=None,
                        help="'all' or N: bf16 agreement also on these pairs (extracted again)")
    args = parser.parse_args(argv)

    print(f"load average at start: {_load()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    all_pairs = pl.read_parquet(args.pairs_file)
    ids = all_pairs["pair_id"].unique(maintain_order=True)
    pairs = all_pairs.filter(pl.col("pair_id").is_in(ids.head(args.pairs).implode()))
    model = load_model(args.model_dir)  # a HookedSAETransformer: the seed path uses it too
    sae = load_sae(args.sae_dir)
    hook = sae.cfg.metadata.hook_name
    d_sae = int(sae.cfg.d_sae)
    special = special_token_ids(model.tokenizer)
    cfg = ExtractConfig(batch_size=args.batch_size, max_tokens=args.max_tokens)
    cfg_tl = ExtractConfig(batch_size=args.batch_size, max_tokens=args.max_tokens,
                           forward="transformer_lens")

    sentences = tokenize(model.tokenizer, pairs, args.max_tokens)
    n_real = _real_tokens(sentences, special)
    print(f"{pairs['pair_id'].n_unique()} pairs, {len(sentences)} sentences, {n_real:,} real "
          f"tokens; {hook}, d_sae {d_sae}; batches of {args.batch_size}, {args.rounds} rounds",
          flush=True)

    paths = {
        "seed": lambda s: seed_style(model, sae, s, args.batch_size),
        "float32": lambda s: sparse_activations(model, sae, hook, s, cfg, desc="float32"),
        "transformer_lens": lambda s: sparse_activations(model, sae, hook, s, cfg_tl,
                                                         desc="transformer_lens"),
    }
    if not args.no_bf16:
        model_bf16 = load_model(args.model_dir, dtype=torch.bfloat16)
        sae_bf16 = load_sae(args.sae_dir).to(torch.bfloat16)
        paths["bfloat16"] = lambda s: sparse_activations(model_bf16, sae_bf16, hook, s, cfg,
                                                         desc="bfloat16")
    for run in paths.values():  # warm-up: first-call allocations and kernel selection
        run(sentences[: min(4, len(sentences))])

    # Each path's batches are those of one pass over all the pairs (ours: length-sorted over
    # the whole set, as for a shard; seed: corpus order). Round r runs every rounds-th batch of
    # each path: the rounds interleave the paths in time without changing a single batch.
    ordered = sorted(range(len(sentences)), key=lambda i: (sentences[i].pair_id, sentences[i].lang))
    batches = {"seed": [list(range(i, min(i + args.batch_size, len(sentences))))
                        for i in range(0, len(sentences), args.batch_size)],
               "float32": [[ordered[i] for i in b] for b in length_batches(
                   [len(sentences[i].token_ids) for i in ordered], args.batch_size)]}
    batches["bfloat16"] = batches["transformer_lens"] = batches["float32"]
    batches = {name: batches[name] for name in paths}
    padded = {name: sum(max(len(sentences[i].token_ids) for i in b) * len(b) for b in bs)
              for name, bs in batches.items()}
    seconds = dict.fromkeys(paths, 0.0)
    tables: dict[str, list[pl.DataFrame]] = {name: [] for name in paths if name != "seed"}
    dense_bytes = 0
    for r in range(args.rounds):
        names = list(paths)[r % len(paths) :] + list(paths)[: r % len(paths)]
        for name in names:
            # the seed's corpus order is kept; ours sorts its input itself
            chunk = [sentences[i] for b in batches[name][r :: args.rounds] for i in b]
            t0 = time.perf_counter()
            out = paths[name](chunk)
            seconds[name] += time.perf_counter() - t0
            if name == "seed":
                dense_bytes += sum(t.numel() * t.element_size() for t in out)
            else:
                tables[name].append(out)
            del out
        print(f"round {r + 1}/{args.rounds} ({', '.join(names)}): load {_load()}", flush=True)

    print(f"\n{'path':<16} {'seconds':>8} {'real tok/s':>11} {'vs seed':>8} {'pad eff.':>9}")
    for name, sec in seconds.items():
        print(f"{name:<16} {sec:8.1f} {n_real / sec:11.1f} {seconds['seed'] / sec:7.2f}x "
              f"{n_real / padded[name]:9.3f}")
    print(f"lean / TransformerLens forward: "
          f"{seconds['transformer_lens'] / seconds['float32']:.2f}x")
    if "bfloat16" in seconds:
        print(f"bfloat16 / float32 throughput: {seconds['float32'] / seconds['bfloat16']:.2f}x")
    acts = {k: pl.concat(v).sort("pair_id", "lang", "token_pos", "feature_id")
            for k, v in tables.items()}
    print(f"output kept: seed {dense_bytes / 2**20:,.0f} MiB dense float32, ours "
          f"{acts['float32'].estimated_size() / 2**20:,.0f} MiB sparse in memory "
          f"({acts['float32'].height:,} rows)")

    n_timed = len(ids.head(args.pairs))
    with tempfile.TemporaryDirectory() as tmp:
        if "bfloat16" in acts:
            _print_agreement(f"{n_timed} timed pairs",
                             agreement(acts["float32"], acts["bfloat16"], n_pairs=n_timed,
                                       d_sae=d_sae, workdir=Path(tmp)))
        _print_agreement(f"{n_timed} timed pairs",
                         agreement(acts["transformer_lens"], acts["float32"], n_pairs=n_timed,
                                   d_sae=d_sae, workdir=Path(tmp)),
                         ref="TransformerLens float32", other="lean float32")
    if args.agreement_pairs and "bfloat16" in paths:
        n = len(ids) if args.agreement_pairs == "all" else int(args.agreement_pairs)
        subset = all_pairs.filter(pl.col("pair_id").is_in(ids.head(n).implode()))
        every = tokenize(model.tokenizer, subset, args.max_tokens)
        full = {}
        for name in ("float32", "bfloat16"):
            t0 = time.perf_counter()
            full[name] = paths[name](every)
            sec = time.perf_counter() - t0
            print(f"{name} on {n} pairs: {sec:.1f} s, {_real_tokens(every, special) / sec:.1f} "
                  f"real tok/s (load {_load()})", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            _print_agreement(f"{n} pairs", agreement(full["float32"], full["bfloat16"], n_pairs=n,
                                                     d_sae=d_sae, workdir=Path(tmp)))
    print(f"load average at end: {_load()}; peak RSS {_peak_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
