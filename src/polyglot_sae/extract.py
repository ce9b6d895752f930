"""Activations at a hook point: sparse SAE features per token, or dense vectors for training.

The model runs only up to the hook's layer (no logits, no full cache), on length-sorted batches
padded on the right: with causal attention the real tokens never see the padding, so the result
is exact for them and the padding costs little.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Literal

import numpy as np
import polars as pl
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from .models import special_token_ids, stop_layer

ACTS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
               "feature_id": pl.UInt32, "value": pl.Float32}
TOKENS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
                 "token_id": pl.UInt32, "token_str": pl.String}


@dataclass(frozen=True)
class ExtractConfig:
    """How activations are computed (everything here can change the numbers)."""

    batch_size: int = 32  # sentences per forward pass
    dtype: Literal["float32", "bfloat16"] = "float32"  # model and SAE compute dtype
    max_tokens: int = 256  # sentences are truncated to this many tokens (BOS included)
    device: str = "auto"  # auto: cuda when available, else cpu


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"warning: device {device} requested but CUDA is absent; using cpu", file=sys.stderr)
        return "cpu"
    return device


@dataclass(frozen=True)
class Sentence:
    pair_id: int
    lang: str
    token_ids: list[int]


def tokenize(tokenizer, pairs: pl.DataFrame, max_tokens: int) -> list[Sentence]:
    """Tokens with BOS first, as the model saw them in training."""
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
    tokens: torch.Tensor  # (batch, pos), right-padded
    acts: Float[torch.Tensor, "batch pos d_model"]  # at the hook
    logits: torch.Tensor | None  # (batch, pos, d_vocab) when asked for


def hook_batches(model, hook: str, sentences: Sequence[Sentence], batch_size: int,
                 desc: str = "extract", with_logits: bool = False) -> Iterator[Batch]:
    """Length-sorted, right-padded batches with their hook activations; the model stops at the
    hook's layer unless the logits are wanted too."""
    order = sorted(range(len(sentences)), key=lambda i: (len(sentences[i].token_ids), i))
    pad = model.tokenizer.pad_token_id or 0
    stop = None if with_logits else stop_layer(hook)
    n_tokens = sum(len(s.token_ids) for s in sentences)
    with tqdm(total=n_tokens, desc=desc, unit="tok", file=sys.stderr, mininterval=5) as bar:
        for start in range(0, len(order), batch_size):
            batch = [sentences[i] for i in order[start : start + batch_size]]
            width = max(len(s.token_ids) for s in batch)
            tokens = torch.full((len(batch), width), pad, dtype=torch.long)
            for row, s in enumerate(batch):
                tokens[row, : len(s.token_ids)] = torch.tensor(s.token_ids)
            tokens = tokens.to(model.cfg.device)
            with torch.inference_mode():
                out, cache = model.run_with_cache(tokens, names_filter=hook, stop_at_layer=stop)
            yield Batch(batch, tokens, cache[hook], out if with_logits else None)
            bar.update(sum(len(s.token_ids) for s in batch))


def valid_token_mask(batch: list[Sentence], width: int, special: set[int]) -> torch.Tensor:
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for row, s in enumerate(batch):
        mask[row, : len(s.token_ids)] = torch.tensor([t not in special for t in s.token_ids])
    return mask


def extract_sparse(model, sae, hook: str, pairs: pl.DataFrame, cfg: ExtractConfig,
                   desc: str = "extract") -> pl.DataFrame:
    """Sparse SAE activations ``pair_id, lang, token_pos, feature_id, value`` (value > 0 only),
    special tokens (BOS, EOS, padding) excluded, sorted."""
    return sparse_activations(model, sae, hook, tokenize(model.tokenizer, pairs, cfg.max_tokens),
                              cfg, desc)


def sparse_activations(model, sae, hook: str, sentences: Sequence[Sentence], cfg: ExtractConfig,
                       desc: str = "extract") -> pl.DataFrame:
    special = special_token_ids(model.tokenizer)
    parts: list[dict[str, np.ndarray]] = []
    for b in hook_batches(model, hook, sentences, cfg.batch_size, desc):
        batch, resid = b.sentences, b.acts
        mask = valid_token_mask(batch, resid.shape[1], special).to(resid.device)
        with torch.inference_mode():
            acts = sae.encode(resid.to(sae.dtype)) * mask.unsqueeze(-1)
        rows, pos, feat = acts.nonzero(as_tuple=True)
        value = acts[rows, pos, feat].float().cpu().numpy()
        rows = rows.cpu().numpy()
        parts.append({
            "pair_id": np.array([s.pair_id for s in batch], dtype=np.uint32)[rows],
            "lang": np.array([s.lang for s in batch], dtype=object)[rows],
            "token_pos": pos.cpu().numpy().astype(np.uint16),
            "feature_id": feat.cpu().numpy().astype(np.uint32),
            "value": value.astype(np.float32),
        })
    if not parts:
        return pl.DataFrame(schema=ACTS_SCHEMA)
    table = pl.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in ACTS_SCHEMA},
                         schema=ACTS_SCHEMA)
    return table.sort("pair_id", "lang", "token_pos", "feature_id")


def token_table(tokenizer, sentences: Sequence[Sentence]) -> pl.DataFrame:
    """Every token (BOS included, at position 0) with its string, to show examples later."""
    ids = [t for s in sentences for t in s.token_ids]
    strings = tokenizer.convert_ids_to_tokens(ids)
    return pl.DataFrame({
        "pair_id": [s.pair_id for s in sentences for _ in s.token_ids],
        "lang": [s.lang for s in sentences for _ in s.token_ids],
        "token_pos": [i for s in sentences for i in range(len(s.token_ids))],
        "token_id": ids,
        "token_str": strings,
    }, schema=TOKENS_SCHEMA).sort("pair_id", "lang", "token_pos")


def dense_activations(model, hook: str, pairs: pl.DataFrame, cfg: ExtractConfig,
                      desc: str = "cache") -> tuple[Float[torch.Tensor, "n_tokens d_model"], list[str]]:
    """Hook activations of every non-special token (for SAE training), with each token's language."""
    special = special_token_ids(model.tokenizer)
    sentences = tokenize(model.tokenizer, pairs, cfg.max_tokens)
    chunks, langs = [], []
    for b in hook_batches(model, hook, sentences, cfg.batch_size, desc):
        batch, resid = b.sentences, b.acts
        mask = valid_token_mask(batch, resid.shape[1], special).to(resid.device)
        chunks.append(resid[mask].float().cpu())
        counts = mask.sum(1).tolist()
        langs.extend(lang for s, n in zip(batch, counts) for lang in [s.lang] * n)
    return torch.cat(chunks), langs


def provenance(**extra) -> dict:
    packages = {p: version(p) for p in ("torch", "sae-lens", "transformer-lens", "transformers",
                                        "polars", "polyglot-sae")}
    return {"packages": packages, **extra}


def save_dense_activations(model, hook: str, pairs: pl.DataFrame, cfg: ExtractConfig,
                           out_path: str) -> int:
    """Cache training activations (float32, safetensors) with each token's language index."""
    from safetensors.torch import save_file

    from .atomic_io import atomic_file

    acts, langs = dense_activations(model, hook, pairs, cfg)
    codes = sorted(set(langs))
    lang_ids = torch.tensor([codes.index(lang) for lang in langs], dtype=torch.int16)
    with atomic_file(out_path) as tmp:
        save_file({"acts": acts.contiguous(), "lang": lang_ids}, str(tmp),
                  metadata={"hook": hook, "langs": ",".join(codes)})
    return int(acts.shape[0])


def extract_shard(*, model_dir: str, sae_dir: str, hook: str, sae_id: str, langs: Sequence[str],
                  pairs: pl.DataFrame, cfg: ExtractConfig, acts_path: str, tokens_path: str,
                  desc: str = "extract") -> int:
    """One extraction job: sparse activations and the token table of one shard, with provenance."""
    from .models import check_hook, load_model, load_spec
    from .atomic_io import write_parquet
    from .saes import check_sae_fits, load_sae

    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    model = load_model(model_dir, device=device, dtype=dtype)
    sae = load_sae(sae_dir, device=device).to(dtype)
    where = f"config saes[{sae_id}] ({sae_dir})"
    check_hook(model, hook, where)
    check_sae_fits(sae, model, hook, where)
    sentences = tokenize(model.tokenizer, pairs, cfg.max_tokens)
    acts = sparse_activations(model, sae, hook, sentences, cfg, desc)
    meta = provenance(
        model=load_spec(model_dir), hook=hook, sae_id=sae_id, sae_path=str(sae_dir),
        d_sae=int(sae.cfg.d_sae), dtype=cfg.dtype, langs=list(langs),
        n_pairs=int(pairs["pair_id"].n_unique()), max_tokens=cfg.max_tokens,
        excluded_tokens=sorted(special_token_ids(model.tokenizer)),
    )
    write_parquet(token_table(model.tokenizer, sentences), tokens_path, meta)
    write_parquet(acts, acts_path, meta, byte_stream_split=["value"])
    return acts.height
