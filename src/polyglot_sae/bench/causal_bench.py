"""Benchmark of the causal check (ablation and steering of the top features) on the real
default run, or on tiny generated files.

    python -m polyglot_sae.bench.causal_bench                  # results/default, top 20 x 3
    python -m polyglot_sae.bench.causal_bench --class-top-n 5  # + the paired class extras
    python -m polyglot_sae.bench.causal_bench --tiny           # a smoke run on a tiny model

Times ``causal.stage.causal_file`` end to end (model load, held-out scan, ablations, steering)
and prints its phases, the verdicts of each method's top list and the summary's headline. The
real run needs what ``make run`` leaves: the prepared Gemma-3-270M, the default SAE, the
corpus with its splits, the max table and the score tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def tiny_inputs(root: Path, *, n_pairs: int = 60, d_sae: int = 64, seed: int = 0,
                hook: str = "blocks.0.hook_resid_post") -> dict:
    """The causal stage's inputs on a tiny random model in `root`: the keyword arguments of
    ``causal_file`` (but config and out_path). A third of the pairs train, a third are scored,
    a third are held out; the max table and the score tables are random but well-formed."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    from ..atomic_io import write_parquet
    from ..model.load import ModelConfig, load_model, prepare_model

    root.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_model(ModelConfig(source="tiny", tiny={"seed": 1}), root / "model")
    model = load_model(model_dir)
    cfg = JumpReLUSAEConfig(d_in=model.cfg.d_model, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    torch.manual_seed(seed)
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 1.0 / model.cfg.d_model ** 0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.threshold.fill_(0.5)
    sae.save_model(root / "sae")
    words_en = ["God", "water", "king", "house", "light", "bread", "city", "river"]
    words_es = ["Dios", "agua", "rey", "casa", "luz", "pan", "ciudad", "río"]
    rows = []
    for i in range(n_pairs):
        a, b = i % 8, (3 * i + 1) % 8
        rows += [(i, "en", f"The {words_en[a]} and the {words_en[b]} were seen on day {i}."),
                 (i, "es", f"El {words_es[a]} y la {words_es[b]} fueron vistos el día {i}.")]
    pairs = pl.DataFrame(rows, schema={"pair_id": pl.UInt32, "lang": pl.String,
                                       "text": pl.String}, orient="row")
    third = n_pairs // 3
    pairs.write_parquet(root / "pairs.parquet")
    pairs.filter(pl.col("pair_id") < third).write_parquet(root / "train.parquet")
    pairs.filter(pl.col("pair_id").is_between(third, 2 * third - 1)).write_parquet(
        root / "score.parquet")
    rng = np.random.default_rng(seed)
    scored = np.arange(third, 2 * third)
    n = scored.size * 2 * d_sae
    fire = rng.random(n) < np.repeat(rng.uniform(0.05, 0.8, d_sae), 1)[np.arange(n) % d_sae]
    maxacts = pl.DataFrame({
        "pair_id": np.repeat(scored, 2 * d_sae).astype(np.uint32),
        "lang": np.tile(np.repeat(["en", "es"], d_sae), scored.size),
        "feature_id": np.tile(np.arange(d_sae, dtype=np.uint32), 2 * scored.size),
        "value": rng.uniform(0.5, 3.0, n).astype(np.float32),
        "token_id": rng.integers(3, 200, n).astype(np.uint32)}).filter(pl.Series(fire))
    write_parquet(maxacts, root / "maxacts.parquet", {"n_pairs": int(scored.size),
                                                       "d_sae": d_sae})
    classes = ["concept", "shared_string", "length", "lang_specific:en", "weak", "low_support"]
    order = rng.permutation(d_sae)
    cls = [classes[i % len(classes)] for i in range(d_sae)]
    rank = np.where(np.isin(cls, classes[:3] + ["weak"]), order, -1)
    for method in ("paired", "seed"):
        table = pl.DataFrame({"feature_id": np.arange(d_sae, dtype=np.uint32),
                              "dead": np.zeros(d_sae, dtype=bool),
                              "rank": pl.Series(rank).cast(pl.UInt32, strict=False)
                              .scatter(np.flatnonzero(rank < 0), None)})
        if method == "paired":
            table = table.with_columns(pl.Series("class", cls),
                                       pl.Series("rho_lo", rng.uniform(0, 1, d_sae)))
        else:
            order = rng.permutation(d_sae)
            table = table.with_columns(rank=pl.Series(order.astype(np.uint32)))
        table.write_parquet(root / f"{method}.parquet")
    return {"model_dir": model_dir, "sae_dir": root / "sae", "hook": hook,
            "pairs_path": root / "pairs.parquet", "train_path": root / "train.parquet",
            "score_path": root / "score.parquet", "maxacts_path": root / "maxacts.parquet",
            "scores": {m: root / f"{m}.parquet" for m in ("paired", "seed")},
            "langs": ["en", "es"], "sae_id": "tiny"}


def real_inputs(run_dir: Path, corpus_dir: Path, model_dir: Path, sae_dir: Path, sae_id: str,
                methods: list[str]) -> dict:
    import json

    hook = json.loads((sae_dir / "cfg.json").read_text())["metadata"]["hook_name"]
    return {"model_dir": model_dir, "sae_dir": sae_dir, "hook": hook,
            "pairs_path": corpus_dir / "pairs.parquet",
            "train_path": corpus_dir / "split" / "train.parquet",
            "score_path": corpus_dir / "split" / "score.parquet",
            "maxacts_path": run_dir / "maxacts" / f"{sae_id}.parquet",
            "scores": {m: run_dir / "scores" / f"{sae_id}.{m}.parquet" for m in methods},
            "langs": ["en", "es"], "sae_id": sae_id}


def main(argv: list[str] | None = None) -> int:
    from ..causal.config import CausalConfig

    default = CausalConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny generated inputs")
    parser.add_argument("--run-dir", type=Path, default=Path("results/default"))
    parser.add_argument("--corpus-dir", type=Path, default=Path("results/bible-kjv-rv1909"))
    parser.add_argument("--model-dir", type=Path, default=Path("resources/models/gemma-3-270m"))
    parser.add_argument("--sae-dir", type=Path,
                        default=Path("resources/saes/gemma-3-270m/l12-jumprelu-2k"))
    parser.add_argument("--sae-id", default="l12-jumprelu-2k")
    parser.add_argument("--methods", default="paired,exact,seed")
    for name in ("top_n", "class_top_n", "pool_pairs", "pool_part", "pairs_per_lang",
                 "control_sentences", "controls", "window", "top_k", "dictionary_sentences",
                 "batch_size", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            default=getattr(default, name))
    parser.add_argument("--calibrate", action="store_true",
                        help="the tested features replaced by random rate-matched ones")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="where to keep the tables and figures (default: a temp dir)")
    args = parser.parse_args(argv)

    import torch

    from ..atomic_io import read_metadata
    from ..causal.stage import causal_file
    from ..causal.dictionary import headline as dictionary_headline
    from ..causal.verdict import headline

    torch.set_num_threads(args.threads)
    settings = {k: getattr(args, k) for k in (
        "top_n", "class_top_n", "pool_pairs", "pool_part", "pairs_per_lang",
        "control_sentences", "controls", "window", "top_k", "dictionary_sentences", "batch_size",
        "seed", "calibrate")}
    config = CausalConfig(**settings, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        if args.tiny:
            inputs = tiny_inputs(Path(tmp) / "inputs")
            config = CausalConfig(**{**settings, "top_n": min(args.top_n, 5),
                                     "pool_pairs": min(args.pool_pairs, 20),
                                     "pairs_per_lang": 4, "control_sentences": 3,
                                     "controls": min(args.controls, 8),
                                     "dictionary_sentences": min(args.dictionary_sentences, 2)},
                                  device="cpu")
        else:
            missing = [p for p in (args.run_dir, args.corpus_dir, args.model_dir, args.sae_dir)
                       if not p.exists()]
            if missing:
                print(f"missing {missing}: run the default pipeline first (make run), or pass "
                      "--tiny", file=sys.stderr)
                return 2
            inputs = real_inputs(args.run_dir, args.corpus_dir, args.model_dir, args.sae_dir,
                                 args.sae_id, args.methods.split(","))
        t0 = time.perf_counter()
        table = causal_file(**inputs, out_path=out / "causal.parquet",
                            figure_path=out / "causal.png", config=config,
                            dictionary_path=out / "dictionary.parquet")
        wall = time.perf_counter() - t0
        meta = read_metadata(out / "causal.parquet")
        phases, work = meta["timings_s"], meta.get("work")
        checks = read_metadata(out / "dictionary.parquet").get("validation")
        paired = inputs["scores"].get("paired")
        dict_line = dictionary_headline(
            pl.read_parquet(out / "dictionary.parquet"),
            pl.read_parquet(paired) if paired else None, inputs["langs"], checks) if checks \
            else ""

    tested = table.filter(~pl.col("is_control"))
    n_abl = int(table["n_sentences_en"].sum() + table["n_sentences_es"].sum())
    print(f"causal_file: {wall:.1f} s wall on {torch.get_num_threads()} thread(s); "
          f"{tested.height} features tested, {table.height - tested.height} controls; "
          f"{n_abl} (feature, sentence) ablations for the verdicts; phases (s): {phases}; "
          f"work: {work}")
    verdicts = tested["verdict"].to_list()
    called = sum(v == "both" or v.startswith("one:") for v in verdicts)
    measured = sum(v != "untested" for v in verdicts)
    print(f"verdicts: {dict(tested.group_by('verdict').len().sort('verdict').iter_rows())}; "
          f"called (both or one-language): {called} of {measured} measured")
    print(f"control p95 of KL: en {table['control_p95_en'][0]:.4g}, "
          f"es {table['control_p95_es'][0]:.4g} nats per position")
    print(headline(table))
    if dict_line:
        print(dict_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
