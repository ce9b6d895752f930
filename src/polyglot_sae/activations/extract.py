"""Sparse SAE features per token at one or several hooks, or dense vectors for training.

The forward pass is `forward.py`'s: SAEs at several hooks share one pass to the deepest of them
(the hooks the lean forward serves share one pass, any others one TransformerLens pass, so each
hook gets the numbers a pass for it alone gives, bit for bit). Only the real tokens go through
each SAE, and the sparse rows are put in order by a linear-time sort on the sentence (`python -m
polyglot_sae.bench extract` compares this with the seed's path); each SAE's table is sorted and
written by its own threads while the model runs the next block.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from jaxtyping import Float, Int

from polyglot_sae.activations.forward import Batch, Sentence, hook_batches, tokenize
from polyglot_sae.atomic_io import write_parquet_parts
from polyglot_sae.model.lean_forward import LeanForward, lean_forward_for, lean_supports
from polyglot_sae.model.load import special_token_ids

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
    acts: Float[torch.Tensor, "n_real d_sae"] | None  # None when encoded in blocks (`sparse`)
    ready: torch.cuda.Event | None  # recorded after `acts` on CUDA
    # (token, feature, value) of the nonzero activations, when the batch was encoded in blocks
    sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


# The dense (tokens x d_sae) activations of one encoder block stay under this many bytes: a
# batch of 32 sentences x 40 tokens at 1,048,576 latents would be 5.4 GB dense in float32, and
# the JumpReLU encode holds about three such tensors at once. Narrower SAEs (rows x d_sae under
# the limit) keep the one-block path, whose copy to the host overlaps the next forward on CUDA.
ENCODE_BLOCK_BYTES = 512 << 20


def block_rows(sae, block_bytes: int | None = None) -> int:
    """Rows whose dense SAE activations fit ``block_bytes`` (default ``ENCODE_BLOCK_BYTES``, read
    at call time)."""
    limit = ENCODE_BLOCK_BYTES if block_bytes is None else block_bytes
    return max(1, limit // (int(sae.cfg.d_sae) * torch.finfo(sae.dtype).bits // 8))


def encode_sparse(sae, resid: Float[torch.Tensor, "n d_model"], block_bytes: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token, feature, value) of the nonzero SAE activations of ``resid``, encoded in blocks of
    rows whose dense activations fit ``block_bytes``; only one block is dense at a time."""
    step = block_rows(sae, block_bytes)
    tokens, feats, values = [], [], []
    for lo in range(0, resid.shape[0], step):
        acts = sae.encode(resid[lo:lo + step])
        token, feat = acts.nonzero(as_tuple=True)
        values.append(acts[token, feat])
        tokens.append(token + lo)
        feats.append(feat)
        del acts
    if not tokens:
        empty = torch.zeros(0, dtype=torch.int64, device=resid.device)
        return empty, empty, torch.zeros(0, dtype=sae.dtype, device=resid.device)
    return torch.cat(tokens), torch.cat(feats), torch.cat(values)


def _encode(sae, b: Batch, hook_acts: Float[torch.Tensor, "batch pos d_model"],
            special: set[int]) -> _Encoded:
    """Only the real tokens go through the SAE: no encoder work or mask multiply for padding
    and BOS. Their rows are chosen on the host from the token ids, so nothing waits for the
    device."""
    width = hook_acts.shape[1]
    rows_np, pos_np = np.nonzero(b.real(special))
    flat = torch.from_numpy(rows_np * width + pos_np).to(hook_acts.device, non_blocking=True)
    with torch.inference_mode():
        resid = hook_acts.reshape(-1, hook_acts.shape[-1]).index_select(0, flat)
        if resid.shape[0] > block_rows(sae):
            sparse = encode_sparse(sae, resid.to(sae.dtype), ENCODE_BLOCK_BYTES)
            return _Encoded(b.index[rows_np].astype(np.int32), pos_np.astype(np.uint16), None,
                            None, sparse)
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
        if e.sparse is not None:  # encoded in blocks, already sparse (and synchronised)
            token, feat, value = e.sparse
        else:
            if side_stream is not None:
                side_stream.wait_event(e.ready)
                e.acts.record_stream(side_stream)
            token, feat = e.acts.nonzero(as_tuple=True)
            value = e.acts[token, feat]
        value = value.float().cpu().numpy()
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


@dataclass(frozen=True)
class Target:
    """One SAE read at its hook, and (to be written) where its table goes."""

    sae: Any  # an sae-lens SAE
    hook: str
    path: str | Path | None = None
    metadata: dict | None = None


def hook_groups(model, hooks: Sequence[str], cfg: ExtractConfig) -> list[tuple[bool, list[str]]]:
    """The passes that serve `hooks`, each as (lean?, its hooks): one lean pass for the hooks
    the lean forward covers (when the config asks for it), one TransformerLens pass for the
    rest."""
    hooks = list(dict.fromkeys(hooks))
    lean = [h for h in hooks if cfg.forward == "lean" and lean_supports(model, h)]
    rest = [h for h in hooks if h not in lean]
    return [(is_lean, group) for is_lean, group in ((True, lean), (False, rest)) if group]


def forward_passes(model, hooks: Sequence[str], cfg: ExtractConfig,
                   ) -> list[tuple[LeanForward | None, list[str]]]:
    """`hook_groups` with each lean pass's forward built (None: TransformerLens)."""
    return [(lean_forward_for(model, group, cfg.compile) if is_lean else None, group)
            for is_lean, group in hook_groups(model, hooks, cfg)]


def pass_names(model, hooks: Sequence[str], cfg: ExtractConfig) -> list[tuple[str, list[str]]]:
    """`hook_groups` as the job logs show it: (engine, hooks) per pass."""
    return [("lean" if is_lean else "transformer_lens", group)
            for is_lean, group in hook_groups(model, hooks, cfg)]


def _chunk_parts(model, targets: Sequence[Target], sentences: Sequence[Sentence],
                 cfg: ExtractConfig, desc: str, special: set[int] | None, chunk_tokens: int,
                 ) -> Iterator[tuple[list[Sentence], list[list[dict[str, np.ndarray]]]]]:
    """Per block of sentences (`_chunks`), its sentences and, per target, the nonzero
    activations of its batches. Blocks bound the memory and let a block's tables be written
    while the next runs."""
    if special is None:
        special = special_token_ids(model.tokenizer)
    for t in targets:
        _encoder_transposed(t.sae)
    side_stream = torch.cuda.Stream() if str(model.cfg.device).startswith("cuda") else None
    passes = forward_passes(model, [t.hook for t in targets], cfg)
    for chunk in _chunks(sentences, chunk_tokens):
        parts: list[list[dict[str, np.ndarray]]] = [[] for _ in targets]
        for lean, hooks in passes:
            pending: dict[int, _Encoded] = {}
            for b in hook_batches(model, hooks, chunk, cfg.batch_size, desc,
                                  batch_tokens=cfg.batch_tokens, lean=lean):
                for k, t in enumerate(targets):
                    if t.hook not in b.at:
                        continue
                    encoded = _encode(t.sae, b, b.at[t.hook], special)
                    if k in pending:  # the previous batch's, copied while this one computes
                        parts[k].append(_to_host(pending[k], side_stream))
                    pending[k] = encoded
            for k, encoded in pending.items():
                parts[k].append(_to_host(encoded, side_stream))
        yield chunk, parts


def sparse_activations(model, sae, hook: str, sentences: Sequence[Sentence], cfg: ExtractConfig,
                       desc: str = "extract", special: set[int] | None = None, *,
                       chunk_tokens: int = CHUNK_TOKENS) -> pl.DataFrame:
    """Sparse SAE activations of tokenized sentences (see `extract_sparse`); `special` (the token
    ids never kept) defaults to the tokenizer's special tokens."""
    tables = [_sorted_table(chunk, parts[0]) for chunk, parts in
              _chunk_parts(model, [Target(sae, hook)], sentences, cfg, desc, special,
                           chunk_tokens)]
    return pl.concat(tables) if tables else pl.DataFrame(schema=ACTS_SCHEMA)


class _Aborted(Exception):
    """Sent to the writer thread when the extraction fails."""


_DONE = object()  # the last item for the writer thread


class _TableWriter:
    """One table written (atomically) block by block by its own thread, while block k is
    sorted by a third thread and block k-1 is written: at GPU speed, sorting then writing each
    block in turn was slower than the model. Memory: one block waiting, one being sorted, one
    being written."""

    def __init__(self, path: str | Path, metadata: dict):
        self.blocks: queue.Queue = queue.Queue(maxsize=1)
        self.outcome: dict[str, object] = {}
        self.thread = threading.Thread(target=self._write, args=(path, metadata),
                                       name="acts-writer", daemon=True)
        self.thread.start()

    def _tables(self) -> Iterator[pl.DataFrame]:
        with ThreadPoolExecutor(1, thread_name_prefix="acts-sort") as sorter:
            pending = None
            while (item := self.blocks.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item  # the producer failed: write_parquet_parts drops the partial file
                sorting = sorter.submit(_sorted_table, *item)
                if pending is not None:
                    yield pending.result()
                pending = sorting
            if pending is not None:
                yield pending.result()

    def _write(self, path: str | Path, metadata: dict) -> None:
        try:
            self.outcome["rows"] = write_parquet_parts(self._tables(), path, ACTS_SCHEMA, metadata,
                                                       byte_stream_split=["value"])
        except BaseException as err:  # noqa: BLE001 (re-raised in the caller's thread)
            self.outcome["error"] = err

    def put(self, item: object) -> None:
        while self.thread.is_alive():  # a dead writer takes nothing: stop instead of blocking
            with contextlib.suppress(queue.Full):
                self.blocks.put(item, timeout=0.1)
                return
        raise self.outcome.get("error") or RuntimeError("the writer thread stopped")

    def finish(self) -> int:
        self.put(_DONE)
        self.thread.join()
        if "error" in self.outcome:
            raise self.outcome["error"]
        return int(self.outcome["rows"])

    def abort(self, err: BaseException) -> None:
        if self.thread.is_alive() and err is not self.outcome.get("error"):
            with contextlib.suppress(BaseException):
                self.put(_Aborted("extraction failed"))
        self.thread.join()


def write_sparse_tables(model, targets: Sequence[Target], sentences: Sequence[Sentence],
                        cfg: ExtractConfig, desc: str = "extract",
                        special: set[int] | None = None, *,
                        chunk_tokens: int = CHUNK_TOKENS) -> list[int]:
    """`sparse_activations` of every target, from one pass per forward engine, each written to
    its `path` (atomically) as it comes. The rows written, per target."""
    writers = [_TableWriter(t.path, t.metadata or {}) for t in targets]
    try:
        for chunk, parts in _chunk_parts(model, targets, sentences, cfg, desc, special,
                                         chunk_tokens):
            for writer, part in zip(writers, parts):
                writer.put((chunk, part))
        return [writer.finish() for writer in writers]
    except BaseException as err:
        for writer in writers:
            writer.abort(err)
        raise


def write_sparse_activations(model, sae, hook: str, sentences: Sequence[Sentence],
                             cfg: ExtractConfig, path: str | Path, metadata: dict,
                             desc: str = "extract", special: set[int] | None = None, *,
                             chunk_tokens: int = CHUNK_TOKENS) -> int:
    """`write_sparse_tables` for one SAE."""
    return write_sparse_tables(model, [Target(sae, hook, path, metadata)], sentences, cfg, desc,
                               special, chunk_tokens=chunk_tokens)[0]


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


def dense_activations(model, hooks: Sequence[str], pairs: pl.DataFrame, cfg: ExtractConfig,
                      desc: str = "cache",
                      ) -> tuple[dict[str, Float[torch.Tensor, "n_tokens d_model"]], list[str]]:
    """Activations at each hook of every non-special token (for SAE training), from one pass per
    forward engine, with each token's language."""
    special = special_token_ids(model.tokenizer)
    sentences = tokenize(model.tokenizer, pairs, cfg.max_tokens)
    chunks: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    langs: list[str] = []
    for lean, pass_hooks in forward_passes(model, hooks, cfg):
        pass_langs: list[str] = []
        for b in hook_batches(model, pass_hooks, sentences, cfg.batch_size, desc,
                              batch_tokens=cfg.batch_tokens, lean=lean):
            mask = torch.from_numpy(b.real(special)).to(b.tokens.device)
            for hook in pass_hooks:
                chunks[hook].append(b.at[hook][mask].float().cpu())
            pass_langs.extend(s.lang for s, n in zip(b.sentences, mask.sum(1).tolist())
                              for _ in range(n))
        langs = pass_langs  # every pass sees the same batches in the same order
    acts = {}
    for hook in hooks:  # one at a time: the blocks of a hook are freed as it is joined
        acts[hook] = torch.cat(chunks.pop(hook))
    return acts, langs


def provenance(**extra) -> dict:
    packages = {p: version(p) for p in ("torch", "sae-lens", "transformer-lens", "transformers",
                                        "polars", "polyglot-sae")}
    return {"packages": packages, **extra}


def save_dense_activations(model, hooks: Sequence[str], pairs: pl.DataFrame, cfg: ExtractConfig,
                           out_paths: Sequence[str | Path],
                           metadata: Sequence[dict[str, str]] | None = None) -> int:
    """Cache training activations at each hook (float32, safetensors, one file per hook) with
    each token's language index, from one pass per engine. The tokens cached (per hook)."""
    from safetensors.torch import save_file

    from polyglot_sae.atomic_io import atomic_file

    acts, langs = dense_activations(model, hooks, pairs, cfg)
    codes = sorted(set(langs))
    lang_ids = torch.tensor([codes.index(lang) for lang in langs], dtype=torch.int16)
    for i, (hook, out_path) in enumerate(zip(hooks, out_paths)):
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out_path) as tmp:
            save_file({"acts": acts.pop(hook).contiguous(), "lang": lang_ids}, str(tmp),
                      metadata={"hook": hook, "langs": ",".join(codes),
                                **(metadata[i] if metadata else {})})
    return len(langs)
