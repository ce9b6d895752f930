"""Activations at a hook point: sparse SAE features per token, or dense vectors for training.

The model runs only up to the hook's layer (no logits, no full cache), on length-sorted batches
padded on the right: with causal attention the real tokens never see the padding, so the result
is exact for them and the padding costs little. Only the real tokens go through the SAE, and the
sparse rows are put in order by a linear-time sort on the sentence (`python -m polyglot_sae.bench
extract` compares this with the seed's path).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from polyglot_sae.atomic_io import write_parquet_parts
from polyglot_sae.device import resolve_device
from polyglot_sae.model.lean_forward import LeanForward, lean_forward_for
from polyglot_sae.model.load import special_token_ids, stop_layer

ACTS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
               "feature_id": pl.UInt32, "value": pl.Float32}
TOKENS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
                 "token_id": pl.UInt32, "token_str": pl.String}
# Sentences are extracted in blocks of about this many tokens (a default shard is one block):
# a block's table is sorted and written while the model runs the next one.
CHUNK_TOKENS = 1 << 17


@dataclass(frozen=True)
class ExtractConfig:
    """How activations are computed (everything here can change the numbers)."""

    batch_size: int = 32  # sentences per forward pass
    # tokens per forward pass, padding included, instead of batch_size sentences: batches of
    # short sentences grow and those of long ones shrink (a GPU wants a steady batch size)
    batch_tokens: int | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"  # model and SAE compute dtype
    # lean: our own forward pass to the hook (`lean_forward`; Gemma-2/3 at hook_resid_post,
    # equal to TransformerLens' to float rounding, faster); transformer_lens: TransformerLens'
    # forward, which is also what any other model or hook gets
    forward: Literal["lean", "transformer_lens"] = "lean"
    # lean only: run each block through torch.compile (fused norms, rotary, GELU). Worth it on
    # a GPU for long jobs; costs a one-off compile (tens of seconds) per process
    compile: bool = False
    max_tokens: int = 256  # sentences are truncated to this many tokens (BOS included)
    device: str = "auto"  # auto: cuda when available, else cpu


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
    index: Int[np.ndarray, " batch"]  # of each sentence in the list given to hook_batches
    tokens: Int[torch.Tensor, "batch pos"]  # right-padded, on the model's device
    token_ids: Int[np.ndarray, "batch pos"]  # the same on the host
    inside: Bool[np.ndarray, "batch pos"]  # positions inside the sentence (not padding)
    acts: Float[torch.Tensor, "batch pos d_model"]  # at the hook
    logits: Float[torch.Tensor, "batch pos d_vocab"] | None  # when asked for

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


def _lean_forward(model, hook: str, cfg: ExtractConfig) -> LeanForward | None:
    """The lean forward `cfg` asks for, built once per extraction (it copies the block
    weights); None: TransformerLens' forward."""
    return lean_forward_for(model, hook, cfg.compile) if cfg.forward == "lean" else None


def pad_token_id(model) -> int:
    tokenizer = model.tokenizer
    return (tokenizer.pad_token_id or 0) if tokenizer is not None else 0


def hook_batches(model, hook: str, sentences: Sequence[Sentence], batch_size: int,
                 desc: str = "extract", with_logits: bool = False,
                 batch_tokens: int | None = None, lean: LeanForward | None = None,
                 ) -> Iterator[Batch]:
    """Length-sorted, right-padded batches with their hook activations; the model stops at the
    hook's layer unless the logits are wanted too. `lean` (from `lean_forward`), when given,
    computes the activations instead of TransformerLens.

    TransformerLens' activation is taken by a forward hook rather than `run_with_cache`, which
    would also build an ActivationCache per batch; the tensors are the same."""
    pad = pad_token_id(model)
    stop = None if with_logits else stop_layer(hook)
    if with_logits:
        lean = None
    captured: dict[str, torch.Tensor] = {}

    def keep(act, hook):  # noqa: ARG001 (TransformerLens passes the hook point)
        captured["acts"] = act

    packed = _Packed(sentences)
    with tqdm(total=int(packed.lengths.sum()), desc=desc, unit="tok", file=sys.stderr,
              mininterval=5) as bar:
        for idx in length_batches(packed.lengths.tolist(), batch_size, batch_tokens):
            index = np.asarray(idx, dtype=np.int64)
            token_ids, inside = packed.padded(index, pad)
            tokens = torch.from_numpy(token_ids).to(model.cfg.device, non_blocking=True)
            logits = None
            if lean is not None:
                acts = lean(tokens)
            else:
                # Entered per batch, not around the loop: the caller runs its own passes between
                # batches (sae_eval splices the SAE in) and must not see this hook or mode.
                with torch.inference_mode(), model.hooks(fwd_hooks=[(hook, keep)]):
                    out = model(tokens, stop_at_layer=stop, return_type="logits")
                acts, logits = captured.pop("acts"), out if with_logits else None
            yield Batch([sentences[i] for i in idx], index, tokens, token_ids, inside, acts,
                        logits)
            bar.update(int(packed.lengths[index].sum()))


def extract_sparse(model, sae, hook: str, pairs: pl.DataFrame, cfg: ExtractConfig,
                   desc: str = "extract") -> pl.DataFrame:
    """Sparse SAE activations ``pair_id, lang, token_pos, feature_id, value`` (value > 0 only),
    special tokens (BOS, EOS, padding) excluded, sorted."""
    return sparse_activations(model, sae, hook, tokenize(model.tokenizer, pairs, cfg.max_tokens),
                              cfg, desc)


@dataclass
class _Encoded:
    """One batch's SAE activations on its real tokens, still on the device."""

    sentence: Int[np.ndarray, " n_real"]  # index into the sentence list, per real token
    pos: Int[np.ndarray, " n_real"]
    acts: Float[torch.Tensor, "n_real d_sae"]
    ready: torch.cuda.Event | None  # recorded after `acts` on CUDA


def _encode(sae, b: Batch, special: set[int]) -> _Encoded:
    """Only the real tokens go through the SAE: no encoder work or mask multiply for padding
    and BOS. Their rows are chosen on the host from the token ids, so nothing waits for the
    device."""
    width = b.acts.shape[1]
    rows_np, pos_np = np.nonzero(b.real(special))
    flat = torch.from_numpy(rows_np * width + pos_np).to(b.acts.device, non_blocking=True)
    with torch.inference_mode():
        resid = b.acts.reshape(-1, b.acts.shape[-1]).index_select(0, flat)
        acts = sae.encode(resid.to(sae.dtype))
    ready = None
    if acts.is_cuda:
        ready = torch.cuda.Event()
        ready.record()
    return _Encoded(b.index[rows_np].astype(np.int32), pos_np.astype(np.uint16), acts, ready)


def _to_host(e: _Encoded, side_stream) -> dict[str, np.ndarray]:
    """The nonzero activations of one batch as numpy columns. On CUDA this runs on a side stream
    after the next batch's forward pass was queued, so the device keeps working while the host
    waits for `nonzero`'s count and converts."""
    with torch.inference_mode(), (torch.cuda.stream(side_stream) if side_stream is not None
                                  else contextlib.nullcontext()):
        if side_stream is not None:
            side_stream.wait_event(e.ready)
            e.acts.record_stream(side_stream)
        token, feat = e.acts.nonzero(as_tuple=True)
        value = e.acts[token, feat].float().cpu().numpy()
        token = token.cpu().numpy()
        feat = feat.cpu().numpy()
    return {"sentence": e.sentence[token], "token_pos": e.pos[token],
            "feature_id": feat.astype(np.uint32), "value": value.astype(np.float32)}


def _chunks(sentences: Sequence[Sentence], chunk_tokens: int) -> list[list[Sentence]]:
    """The sentences in output order (pair_id, lang), cut into blocks of about `chunk_tokens`."""
    keys = [(s.pair_id, s.lang) for s in sentences]
    if len(set(keys)) != len(keys):
        raise ValueError("each (pair_id, lang) must occur once among the sentences")
    chunks: list[list[Sentence]] = []
    size = chunk_tokens
    for s in sorted(sentences, key=lambda s: (s.pair_id, s.lang)):
        if size + len(s.token_ids) > chunk_tokens:
            chunks.append([])
            size = 0
        chunks[-1].append(s)
        size += len(s.token_ids)
    return chunks


def _chunk_parts(model, sae, hook: str, sentences: Sequence[Sentence], cfg: ExtractConfig,
                 desc: str, special: set[int] | None, chunk_tokens: int,
                 ) -> Iterator[tuple[list[Sentence], list[dict[str, np.ndarray]]]]:
    """Per block of sentences (`_chunks`), its sentences and the nonzero activations of its
    batches. Blocks bound the memory and let a block's table be written while the next runs."""
    if special is None:
        special = special_token_ids(model.tokenizer)
    _encoder_transposed(sae)
    side_stream = torch.cuda.Stream() if str(model.cfg.device).startswith("cuda") else None
    lean = _lean_forward(model, hook, cfg)
    for chunk in _chunks(sentences, chunk_tokens):
        parts: list[dict[str, np.ndarray]] = []
        pending: _Encoded | None = None
        for b in hook_batches(model, hook, chunk, cfg.batch_size, desc,
                              batch_tokens=cfg.batch_tokens, lean=lean):
            encoded = _encode(sae, b, special)
            if pending is not None:
                parts.append(_to_host(pending, side_stream))
            pending = encoded
        if pending is not None:
            parts.append(_to_host(pending, side_stream))
        yield chunk, parts


def sparse_activations(model, sae, hook: str, sentences: Sequence[Sentence], cfg: ExtractConfig,
                       desc: str = "extract", special: set[int] | None = None, *,
                       chunk_tokens: int = CHUNK_TOKENS) -> pl.DataFrame:
    """Sparse SAE activations of tokenized sentences (see `extract_sparse`); `special` (the token
    ids never kept) defaults to the tokenizer's special tokens."""
    tables = [_sorted_table(chunk, parts) for chunk, parts in
              _chunk_parts(model, sae, hook, sentences, cfg, desc, special, chunk_tokens)]
    return pl.concat(tables) if tables else pl.DataFrame(schema=ACTS_SCHEMA)


class _Aborted(Exception):
    """Sent to the writer thread when the extraction fails."""


_DONE = object()  # the last item for the writer thread


def write_sparse_activations(model, sae, hook: str, sentences: Sequence[Sentence],
                             cfg: ExtractConfig, path: str | Path, metadata: dict,
                             desc: str = "extract", special: set[int] | None = None, *,
                             chunk_tokens: int = CHUNK_TOKENS) -> int:
    """`sparse_activations` written to `path` (atomically) as it comes: while the model runs a
    block, a writer thread writes the block before it, sorted by a third thread. The rows
    written."""
    # memory: one block computing, one waiting, one being sorted, one being written
    blocks: queue.Queue = queue.Queue(maxsize=1)
    outcome: dict[str, object] = {}

    def tables() -> Iterator[pl.DataFrame]:
        # Block k is sorted (numpy, which lets go of the GIL) while block k-1 is written: at
        # GPU speed, sorting then writing each block in turn was slower than the model.
        with ThreadPoolExecutor(1, thread_name_prefix="acts-sort") as sorter:
            pending = None
            while (item := blocks.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item  # the producer failed: write_parquet_parts drops the partial file
                sorting = sorter.submit(_sorted_table, *item)
                if pending is not None:
                    yield pending.result()
                pending = sorting
            if pending is not None:
                yield pending.result()

    def write() -> None:
        try:
            outcome["rows"] = write_parquet_parts(tables(), path, ACTS_SCHEMA, metadata,
                                                  byte_stream_split=["value"])
        except BaseException as err:  # noqa: BLE001 (re-raised in the caller's thread)
            outcome["error"] = err

    writer = threading.Thread(target=write, name="acts-writer", daemon=True)
    writer.start()

    def hand_over(item: object) -> None:
        while writer.is_alive():  # a dead writer takes nothing: stop instead of blocking
            with contextlib.suppress(queue.Full):
                blocks.put(item, timeout=0.1)
                return
        raise outcome.get("error") or RuntimeError("the writer thread stopped")

    try:
        for block in _chunk_parts(model, sae, hook, sentences, cfg, desc, special, chunk_tokens):
            hand_over(block)
        hand_over(_DONE)
    except BaseException as err:
        if writer.is_alive() and err is not outcome.get("error"):
            with contextlib.suppress(BaseException):
                hand_over(_Aborted("extraction failed"))
        writer.join()
        raise
    writer.join()
    if "error" in outcome:
        raise outcome["error"]
    return int(outcome["rows"])


def _encoder_transposed(sae) -> None:
    """On CPU in bfloat16, store W_enc (d_in x d_sae) column-major, same values: ``x @ W_enc``
    then runs as BLAS's x W^T like `nn.Linear`, the layout CPU bfloat16 kernels are fast for
    (~20x the row-major one on AVX2). float32 is left alone: the other layout can change the
    last bits, and float32 results must not move."""
    w = sae.W_enc
    if w.device.type == "cpu" and w.dtype == torch.bfloat16 and w.stride()[0] != 1:
        with torch.no_grad():
            w.data = w.data.T.contiguous().T


def _sorted_table(chunk: Sequence[Sentence],
                  parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
    """One block's activations sorted by pair_id, lang, token_pos, feature_id. The block is in
    (pair_id, lang) order and each sentence's rows come out of `nonzero` together and in
    (token_pos, feature_id) order, so a stable sort on the sentence index is the whole sort
    (numpy's radix sort: linear time)."""
    if not parts:
        return pl.DataFrame(schema=ACTS_SCHEMA)
    sentence = np.concatenate([p["sentence"] for p in parts])
    order = np.argsort(sentence, kind="stable")
    sentence = sentence[order]
    langs = sorted({s.lang for s in chunk})
    lang_code = np.array([langs.index(s.lang) for s in chunk], dtype=np.int64)
    return pl.DataFrame({
        "pair_id": np.array([s.pair_id for s in chunk], dtype=np.uint32)[sentence],
        "lang": pl.Series(langs, dtype=pl.String).gather(lang_code[sentence]),
        "token_pos": np.concatenate([p["token_pos"] for p in parts])[order],
        "feature_id": np.concatenate([p["feature_id"] for p in parts])[order],
        "value": np.concatenate([p["value"] for p in parts])[order],
    }, schema=ACTS_SCHEMA)


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
    for b in hook_batches(model, hook, sentences, cfg.batch_size, desc,
                          batch_tokens=cfg.batch_tokens, lean=_lean_forward(model, hook, cfg)):
        batch, resid = b.sentences, b.acts
        mask = torch.from_numpy(b.real(special)).to(resid.device)
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

    from polyglot_sae.atomic_io import atomic_file

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
    from polyglot_sae.model.load import check_hook, load_model, load_spec
    from polyglot_sae.atomic_io import write_parquet
    from polyglot_sae.model.saes import check_sae_fits, load_sae

    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    if device == "cpu" and dtype == torch.bfloat16 and torch.backends.cpu.get_cpu_capability() in (
            "DEFAULT", "NO AVX", "AVX2"):
        print("warning: bfloat16 on a CPU without bfloat16 instructions (AVX2 at most) runs "
              "several times slower than float32 (python -m polyglot_sae.bench extract)",
              file=sys.stderr)
    model = load_model(model_dir, device=device, dtype=dtype)
    sae = load_sae(sae_dir, device=device).to(dtype)
    where = f"config saes[{sae_id}] ({sae_dir})"
    check_hook(model, hook, where)
    check_sae_fits(sae, model, hook, where)
    sentences = tokenize(model.tokenizer, pairs, cfg.max_tokens)
    meta = provenance(
        model=load_spec(model_dir), hook=hook, sae_id=sae_id, sae_path=str(sae_dir),
        d_sae=int(sae.cfg.d_sae), dtype=cfg.dtype, langs=list(langs),
        n_pairs=int(pairs["pair_id"].n_unique()), max_tokens=cfg.max_tokens,
        excluded_tokens=sorted(special_token_ids(model.tokenizer)),
    )
    write_parquet(token_table(model.tokenizer, sentences), tokens_path, meta)
    return write_sparse_activations(model, sae, hook, sentences, cfg, acts_path, meta, desc)
