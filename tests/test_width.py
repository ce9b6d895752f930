"""The encoder in blocks (wide SAEs: the dense tokens x d_sae activations of a batch never
exist at once) gives what the one-block encode gives, in extraction and in SAE evaluation."""

import numpy as np
import polars as pl
import pytest
import torch
from conftest import make_jumprelu, sample_corpus

from polyglot_sae.activations import extract
from polyglot_sae.activations.extract import ExtractConfig, encode_sparse, sparse_activations
from polyglot_sae.activations.forward import tokenize
from polyglot_sae.activations.sae_eval import evaluate_sae

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def pairs():
    texts = sample_corpus(10)
    return pl.DataFrame({"pair_id": np.repeat(np.arange(10, dtype=np.uint32), 2),
                         "lang": ["en", "es"] * 10,
                         "text": [t for pair in zip(texts["en"], texts["es"]) for t in pair]})


@pytest.fixture(scope="module")
def sae(tiny_model):
    return make_jumprelu(tiny_model.cfg.d_model, 96)


def test_encode_sparse_equals_the_dense_encode_for_any_block(sae):
    x = torch.randn(37, sae.cfg.d_in) * 2
    with torch.inference_mode():
        dense = sae.encode(x)
    token, feat = dense.nonzero(as_tuple=True)
    assert 0 < token.numel() < dense.numel()  # the threshold lets some, not all, fire
    row = 96 * 4  # bytes of one token's activations
    for block in (1, row, 5 * row, 7 * row + 3, 10**9):  # 1 byte: still one token per block
        with torch.inference_mode():
            t, f, v = encode_sparse(sae, x, block)
        assert torch.equal(t, token) and torch.equal(f, feat)
        # a matmul of fewer rows may take another BLAS kernel: the last bits can move
        torch.testing.assert_close(v, dense[token, feat], rtol=1e-6, atol=0)


def test_extraction_in_encoder_blocks_equals_one_block(tiny_model, sae, pairs, monkeypatch):
    sentences = tokenize(tiny_model.tokenizer, pairs, 256)
    cfg = ExtractConfig(batch_size=4)
    whole = sparse_activations(tiny_model, sae, HOOK, sentences, cfg)
    calls = []
    monkeypatch.setattr(extract, "encode_sparse",
                        lambda *a: calls.append(a[2]) or encode_sparse(*a))
    monkeypatch.setattr(extract, "ENCODE_BLOCK_BYTES", 3 * 96 * 4)  # 3 tokens per block
    blocks = sparse_activations(tiny_model, sae, HOOK, sentences, cfg)
    assert calls  # the blocked path ran
    assert whole.height > 0
    assert blocks.drop("value").equals(whole.drop("value"))
    np.testing.assert_allclose(blocks["value"], whole["value"], rtol=1e-6, atol=0)


def test_sae_evaluation_in_encoder_blocks_equals_one_block(tiny_model, sae, pairs, monkeypatch):
    whole = evaluate_sae(tiny_model, sae, HOOK, pairs, ExtractConfig(), batch_size=5)
    monkeypatch.setattr(extract, "ENCODE_BLOCK_BYTES", 7 * 96 * 4)  # 7 positions per block
    blocks = evaluate_sae(tiny_model, sae, HOOK, pairs, ExtractConfig(), batch_size=5)
    assert whole.keys() == blocks.keys() == {"en", "es"}
    for lang in whole:
        assert whole[lang]["l0"] > 0
        for key, value in whole[lang].items():
            assert blocks[lang][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (lang, key)


def test_word_level_in_feature_blocks_equals_one_pass():
    """Word-level statistics of a wide SAE go in blocks of features, one pass over the shards
    each: the same table as one pass, whatever the block (one ending mid-way included)."""
    from polyglot_sae.bench.words_bench import links_table, synthetic_corpus, synthetic_shard
    from polyglot_sae.paired.word_level import word_level_stats

    n, d_sae = 120, 40
    src, trg, where = synthetic_corpus(n)
    rng = np.random.default_rng(1)
    shards = [synthetic_shard(np.arange(lo, lo + 60), src, where, d_sae, 4, rng)
              for lo in (0, 60)]
    shards = [(acts.collect().lazy(), tokmap) for acts, tokmap in shards]
    texts = pl.DataFrame({"pair_id": np.repeat(np.arange(n), 2).astype(np.uint32),
                          "lang": ["en", "es"] * n,
                          "text": [" ".join(s) for pair in zip(src, trg) for s in pair]})

    def run(block):
        return word_level_stats(shards, {("en", "es"): links_table(n, where)}, texts,
                                scored=np.arange(n), d_sae=d_sae, langs=["en", "es"],
                                replicates=19, feature_block=block)

    whole, examples = run(None)
    assert whole.height == d_sae and whole["r_word"].is_not_null().sum() > d_sae // 2
    assert examples.height > 0
    for block in (1, 7, 40):
        stats, ex = run(block)
        assert stats.equals(whole), block
        assert ex.equals(examples), block
