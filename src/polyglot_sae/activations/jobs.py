"""The extraction jobs: one per (SAE, shard) and one training cache per hook, sharing the
model's passes at run time (`shared`): the first job to run computes every table still to
compute in one pass, the others take theirs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import polars as pl
import torch

from polyglot_sae.activations.extract import (ExtractConfig, Target, pass_names, provenance,
                                              save_dense_activations, token_table,
                                              write_sparse_tables)
from polyglot_sae.activations.forward import tokenize
from polyglot_sae.activations.shared import (KEY_FIELD, SHARED_DIR, Sibling, adopt,
                                             folder_digest, locked, pass_key, table_digest,
                                             wanted)
from polyglot_sae.device import resolve_device
from polyglot_sae.model.load import special_token_ids


def _model_for(model_dir: str, cfg: ExtractConfig):
    from polyglot_sae.model.load import load_model

    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    if device == "cpu" and dtype == torch.bfloat16 and torch.backends.cpu.get_cpu_capability() in (
            "DEFAULT", "NO AVX", "AVX2"):
        print("warning: bfloat16 on a CPU without bfloat16 instructions (AVX2 at most) runs "
              "several times slower than float32 (python -m polyglot_sae.bench extract)",
              file=sys.stderr)
    return load_model(model_dir, device=device, dtype=dtype), device, dtype


def _fitting(model, saes: Sequence[Sibling], device, dtype, strict: Sibling | None = None):
    """The SAEs loaded and checked against the model; a sibling that does not fit is left to
    its own job, except `strict` (the job's own), whose error stops the job."""
    from polyglot_sae.errors import InputError
    from polyglot_sae.model.load import check_hook
    from polyglot_sae.model.saes import check_sae_fits, load_sae

    loaded = []
    for s in saes:
        where = f"config saes[{s.sae_id}] ({s.sae_dir})"
        try:
            check_hook(model, s.hook, where)
            sae = load_sae(s.sae_dir, device=device).to(dtype)
            check_sae_fits(sae, model, s.hook, where)
        except InputError:
            if s is strict:
                raise
            continue
        loaded.append((s, sae))
    return loaded


def extraction_key(model_dir: str, sae_dir: str, hook: str, pairs: pl.DataFrame,
                   langs: Sequence[str], cfg: ExtractConfig) -> str:
    """What one SAE's table of a shard is computed from (`shared.pass_key`)."""
    from polyglot_sae.model.load import load_spec

    return pass_key(model=load_spec(model_dir), weights=folder_digest(model_dir, contents=False),
                    sae=folder_digest(sae_dir, contents=True), hook=hook,
                    pairs=table_digest(pairs), langs=list(langs), extract=asdict(cfg))


def extract_shard(*, model_dir: str, own: Sibling, siblings: Sequence[Sibling],
                  langs: Sequence[str], pairs: pl.DataFrame, cfg: ExtractConfig,
                  desc: str = "extract") -> dict[str, Any]:
    """One extraction job: the sparse activations and the token table of one SAE on one shard,
    with provenance; in the same pass those of the `siblings` still to extract, for their jobs
    to take (`shared`). What happened: `adopted` (another job's pass computed it), else
    `passes` (per pass, its engine and hooks) and `rows` (per SAE, the activations written)."""
    from polyglot_sae.atomic_io import write_parquet
    from polyglot_sae.model.load import load_spec

    final = own.final["acts"]
    shared = final.parents[2] / SHARED_DIR / final.parents[1].name
    with locked(shared / f"{final.stem}.lock"):
        if adopt(own, shared):
            return {"adopted": True}
        model, device, dtype = _model_for(model_dir, cfg)
        loaded = _fitting(model, [own, *wanted(siblings, own, shared)], device, dtype, own)
        sentences = tokenize(model.tokenizer, pairs, cfg.max_tokens)
        tokens = token_table(model.tokenizer, sentences)
        targets = []
        for s, sae in loaded:
            paths = s.final if s is own else s.cached(shared)
            meta = provenance(
                model=load_spec(model_dir), hook=s.hook, sae_id=s.sae_id, sae_path=s.sae_dir,
                d_sae=int(sae.cfg.d_sae), dtype=cfg.dtype, langs=list(langs),
                n_pairs=int(pairs["pair_id"].n_unique()), max_tokens=cfg.max_tokens,
                excluded_tokens=sorted(special_token_ids(model.tokenizer)), **{KEY_FIELD: s.key})
            write_parquet(tokens, paths["tokens"], meta)
            targets.append(Target(sae, s.hook, paths["acts"], meta))
        passes = pass_names(model, [s.hook for s, _ in loaded], cfg)
        rows = write_sparse_tables(model, targets, sentences, cfg, desc)
    return {"adopted": False, "passes": passes,
            "rows": {s.sae_id: n for (s, _), n in zip(loaded, rows)}}


def training_key(model_dir: str, hook: str, pairs: pl.DataFrame, cfg: ExtractConfig) -> str:
    """What one hook's training cache is computed from (`shared.pass_key`)."""
    from polyglot_sae.model.load import load_spec

    return pass_key(model=load_spec(model_dir), weights=folder_digest(model_dir, contents=False),
                    hook=hook, pairs=table_digest(pairs), extract=asdict(cfg))


def cache_training_activations(*, model_dir: str, own: Sibling, siblings: Sequence[Sibling],
                               pairs: pl.DataFrame, cfg: ExtractConfig) -> dict[str, Any]:
    """One training-cache job: the activations at one hook, and in the same pass at the
    `siblings`' hooks still to cache, for their jobs to take (`shared`)."""
    from polyglot_sae.model.load import check_hook

    final = own.final["acts"]
    shared = final.parent / SHARED_DIR
    with locked(shared / "cache.lock"):
        if adopt(own, shared):
            return {"adopted": True}
        model, _, _ = _model_for(model_dir, ExtractConfig(**{**asdict(cfg), "dtype": "float32"}))
        check_hook(model, own.hook, f"config saes[{own.sae_id}]")
        todo = [own] + [s for s in wanted(siblings, own, shared) if s.hook in model.hook_dict]
        paths = [s.final["acts"] if s is own else s.cached(shared)["acts"] for s in todo]
        n = save_dense_activations(model, [s.hook for s in todo], pairs, cfg, paths,
                                   [{KEY_FIELD: s.key} for s in todo])
        passes = pass_names(model, [s.hook for s in todo], cfg)
    return {"adopted": False, "passes": passes, "tokens": n, "hooks": [s.hook for s in todo]}
