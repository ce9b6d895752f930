"""Several hooks in one forward pass: the same tables as one hook at a time, bit for bit, from
fewer model calls (a Gemma-3-shaped tiny model, so the lean forward serves `resid_post`)."""

import numpy as np
import pytest
import torch
from conftest import make_jumprelu, tiny_gemma

from polyglot_sae.activations.extract import (ExtractConfig, Target, dense_activations,
                                              sparse_activations, write_sparse_tables)
from polyglot_sae.activations.forward import Sentence
from polyglot_sae.model.lean_forward import LeanForward, lean_forward_for

HOOKS = ("blocks.1.hook_resid_post", "blocks.3.hook_resid_post", "blocks.2.hook_mlp_out")


@pytest.fixture(scope="module")
def model():
    return tiny_gemma("google/gemma-3-270m")


@pytest.fixture(scope="module")
def saes(model):
    saes = []
    for i, hook in enumerate(HOOKS):
        sae = make_jumprelu(model.cfg.d_model, 40 + 8 * i, seed=i, hook=hook)
        with torch.no_grad():
            sae.threshold.fill_(1.5)
        saes.append(sae)
    return saes


def _sentences(n: int, d_vocab: int) -> list[Sentence]:
    rng = np.random.default_rng(3)
    return [Sentence(i // 2, ("en", "es")[i % 2],
                     [2, *rng.integers(3, d_vocab, rng.integers(2, 15)).tolist()])
            for i in range(n)]


class _Counter:
    """Counts the model's forward calls: TransformerLens' and the lean forward's."""

    def __init__(self, monkeypatch, model):
        self.calls = 0
        tl_forward, lean_run = type(model).forward, LeanForward.run

        def counted_tl(*args, **kwargs):
            self.calls += 1
            return tl_forward(*args, **kwargs)

        def counted_lean(*args, **kwargs):
            self.calls += 1
            return lean_run(*args, **kwargs)

        monkeypatch.setattr(type(model), "forward", counted_tl)
        monkeypatch.setattr(LeanForward, "run", counted_lean)


def test_lean_run_at_several_layers_equals_one_forward_per_layer(model):
    tokens = torch.randint(3, model.cfg.d_vocab, (3, 11))
    got = lean_forward_for(model, ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]).run(
        tokens, {0, 2})
    for layer in (0, 2):
        alone = lean_forward_for(model, f"blocks.{layer}.hook_resid_post")(tokens)
        assert torch.equal(got[layer], alone), layer


def test_several_hooks_in_one_pass_equal_one_hook_at_a_time(model, saes, tmp_path, monkeypatch):
    import polars as pl

    sentences = _sentences(30, model.cfg.d_vocab)
    cfg = ExtractConfig(batch_size=4)
    alone = [sparse_activations(model, sae, hook, sentences, cfg, special={0, 1, 2})
             for sae, hook in zip(saes, HOOKS)]
    n_batches = -(-len(sentences) // cfg.batch_size)
    counter = _Counter(monkeypatch, model)
    targets = [Target(sae, hook, tmp_path / f"{i}.parquet", {"hook": hook})
               for i, (sae, hook) in enumerate(zip(saes, HOOKS))]
    rows = write_sparse_tables(model, targets, sentences, cfg, special={0, 1, 2})
    # one lean pass for the two resid_post hooks, one TransformerLens pass for mlp_out; one
    # hook at a time would have been three
    assert counter.calls == 2 * n_batches
    for i, table in enumerate(alone):
        assert table.height > 20 and rows[i] == table.height
        assert pl.read_parquet(tmp_path / f"{i}.parquet").equals(table), HOOKS[i]
    assert not alone[0].equals(alone[1])  # different hooks, different tables


def test_dense_training_activations_at_several_hooks(model, monkeypatch):
    import polars as pl

    texts = ["a b c", "d e f g", "h i", "j k l m n o"]
    pairs = pl.DataFrame({"pair_id": [0, 0, 1, 1], "lang": ["en", "es"] * 2, "text": texts},
                         schema={"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String})
    model.tokenizer = _ByteTokenizer()
    cfg = ExtractConfig(batch_size=3)
    counter = _Counter(monkeypatch, model)
    together, langs = dense_activations(model, list(HOOKS), pairs, cfg)
    assert counter.calls == 2 * 2  # two engines, two batches
    for hook in HOOKS:
        alone, alone_langs = dense_activations(model, [hook], pairs, cfg)
        assert torch.equal(together[hook], alone[hook]) and langs == alone_langs
    assert together[HOOKS[0]].shape[0] == len(langs) == sum(len(t) for t in texts)


class _ByteTokenizer:
    """Characters as token ids (BOS 2, pad 0): enough for the dense cache's batching."""

    bos_token_id, pad_token_id, all_special_ids, padding_side = 2, 0, [0, 1, 2], "right"

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[2, *(3 + ord(c) % 40 for c in t)] for t in texts]}


def test_a_job_serves_its_siblings_and_they_take_their_tables(tiny_model_dir, tmp_path):
    """Two SAEs' extraction jobs on one shard: the first runs the model once for both, the
    second takes its table (same as extracting it alone); a table stamped with another key is
    not taken."""
    import polars as pl
    from conftest import sample_corpus

    from polyglot_sae.activations.extract import extract_sparse
    from polyglot_sae.activations.jobs import extract_shard, extraction_key
    from polyglot_sae.activations.shared import Sibling
    from polyglot_sae.model.load import load_model

    texts = sample_corpus(6)
    pairs = pl.DataFrame({"pair_id": np.repeat(np.arange(6, dtype=np.uint32), 2),
                          "lang": ["en", "es"] * 6,
                          "text": [t for pair in zip(texts["en"], texts["es"]) for t in pair]})
    cfg = ExtractConfig(batch_size=4)
    hooks = {"a": "blocks.0.hook_resid_post", "b": "blocks.1.hook_mlp_out"}
    saes = {}
    for i, (sae_id, hook) in enumerate(hooks.items()):
        saes[sae_id] = make_jumprelu(32, 24, seed=i, hook=hook)
        saes[sae_id].save_model(tmp_path / "saes" / sae_id)

    def sibling(sae_id, key=None):
        sae_dir = str(tmp_path / "saes" / sae_id)
        final = {k: tmp_path / "results" / k / sae_id / "00000.parquet" for k in ("acts", "tokens")}
        return Sibling(sae_id, hooks[sae_id], sae_dir, final, key or extraction_key(
            str(tiny_model_dir), sae_dir, hooks[sae_id], pairs, ["en", "es"], cfg))

    run = dict(model_dir=str(tiny_model_dir), langs=["en", "es"], pairs=pairs, cfg=cfg)
    first = extract_shard(own=sibling("a"), siblings=[sibling("b")], **run)
    assert first["passes"] == [("transformer_lens", list(hooks.values()))]
    assert extract_shard(own=sibling("b"), siblings=[sibling("a")], **run) == {"adopted": True}
    model = load_model(tiny_model_dir)
    for sae_id, hook in hooks.items():
        alone = extract_sparse(model, saes[sae_id], hook, pairs, cfg)
        got = pl.read_parquet(tmp_path / "results" / "acts" / sae_id / "00000.parquet")
        assert alone.height > 0 and got.equals(alone), sae_id
    # b's table shared again, then b asked for under another key (e.g. other settings)
    (tmp_path / "results" / "acts" / "b" / "00000.parquet").unlink()
    extract_shard(own=sibling("a"), siblings=[sibling("b")], **run)
    again = extract_shard(own=sibling("b", key="another"), siblings=[], **run)
    assert not again["adopted"] and again["passes"] == [("transformer_lens", [hooks["b"]])]
