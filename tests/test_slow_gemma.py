"""The real Gemma-3-270M (PyPI GGUF, converted offline) against the seed-style extraction path."""

import numpy as np
import polars as pl
import pytest
import torch
from conftest import make_jumprelu

from polyglot_sae.activations.extract import ExtractConfig, extract_sparse
from polyglot_sae.model.load import load_model, load_spec

pytestmark = pytest.mark.slow
HOOK = "blocks.12.hook_resid_post"
TEXTS = {
    "en": ["In the beginning God created the heaven and the earth.",
           "Jesus wept.",
           "And God said, Let there be light: and there was light."],
    "es": ["EN el principio crió Dios los cielos y la tierra.",
           "Y lloró Jesús.",
           "Y dijo Dios: Sea la luz: y fué la luz."],
}


@pytest.fixture(scope="module")
def gemma_dir(real_gemma_dir):
    assert load_spec(real_gemma_dir)["source"] == "gemma3_gguf"
    return real_gemma_dir


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    return load_model(gemma_dir)


def test_tokens_to_words_on_the_real_tokenizer(gemma, gemma_dir):
    """Accented, punctuated and byte-fallback words: each word's tokens spell it (SentencePiece's
    leading space dropped), BOS covers nothing."""
    from polyglot_sae.activations.extract import token_table
    from polyglot_sae.activations.forward import tokenize
    from polyglot_sae.align.segment import words
    from polyglot_sae.align.tokens import load_tokenizer, words_of_tokens

    texts = [*TEXTS["es"], "¿Quién dió á Jacob en presa, y entregó á Israel á saqueadores?",
             "El 𓀀 ídolo de Baal-peor."]
    pairs = pl.DataFrame({"pair_id": np.arange(len(texts), dtype=np.uint32),
                          "lang": ["es"] * len(texts), "text": texts})
    tokens = token_table(gemma.tokenizer, tokenize(gemma.tokenizer, pairs, 256))
    got = words_of_tokens(pairs, tokens, load_tokenizer(gemma_dir))
    joined = got.join(tokens, on=["pair_id", "lang", "token_pos"])
    assert not joined.filter(pl.col("token_pos") == 0).height  # BOS
    byte_fallback = 0
    for pair, text in enumerate(texts):
        ws = words(text)[0]
        mine = joined.filter(pl.col("pair_id") == pair).sort("token_pos")
        assert sorted(set(mine["word"].to_list())) == list(range(len(ws)))  # every word
        for w, word in enumerate(ws):
            pieces = mine.filter(pl.col("word") == w)["token_str"].to_list()
            if all(p.startswith("<0x") for p in pieces):  # the UTF-8 bytes of the word
                byte_fallback += 1
                assert bytes(int(p[3:5], 16) for p in pieces) == word.encode()
            else:
                assert "".join(pieces).replace("\u2581", "") == word, (word, pieces)
    assert byte_fallback >= 1  # the hieroglyph has no piece of its own


def test_gemma_hook_and_tokenizer(gemma):
    assert gemma.cfg.n_layers == 18 and gemma.cfg.d_model == 640
    ids = gemma.tokenizer(TEXTS["en"][0])["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id
    assert HOOK in gemma.hook_dict


def test_max_activations_equal_run_with_cache_with_saes(gemma):
    pairs = pl.DataFrame({
        "pair_id": np.repeat(np.arange(3, dtype=np.uint32), 2),
        "lang": ["en", "es"] * 3,
        "text": [t for pair in zip(TEXTS["en"], TEXTS["es"]) for t in pair],
    }, schema={"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String})
    sae = make_jumprelu(640, 512, hook=HOOK)
    with torch.no_grad():  # thresholds at the 97th percentile of the pre-activations: sparse
        _, cache = gemma.run_with_cache(gemma.to_tokens(TEXTS["en"][0]), names_filter=HOOK,
                                        stop_at_layer=13)
        pre = (cache[HOOK][0, 1:] - sae.b_dec) @ sae.W_enc + sae.b_enc
        sae.threshold.copy_(torch.quantile(pre, 0.97, dim=0).clamp(min=1.0))
    acts = extract_sparse(gemma, sae, HOOK, pairs, ExtractConfig(batch_size=4))
    maxed = acts.group_by("pair_id", "lang", "feature_id").agg(pl.col("value").max())
    compared = 0
    for row in pairs.iter_rows(named=True):
        tokens = gemma.to_tokens(row["text"], prepend_bos=True)
        with torch.no_grad():
            _, ref_cache = gemma.run_with_cache_with_saes(tokens, saes=[sae])
        ref = ref_cache[f"{HOOK}.hook_sae_acts_post"][0, 1:].max(0).values.numpy()
        got = np.zeros_like(ref)
        sel = maxed.filter((pl.col("pair_id") == row["pair_id"]) & (pl.col("lang") == row["lang"]))
        got[sel["feature_id"].to_numpy()] = sel["value"].to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3 * float(ref.max()) * 1e-3)
        compared += int((ref > 0).sum())
    assert compared > 100


def test_lean_forward_equals_transformer_lens(gemma):
    """The real model's lean forward (the default extraction path) against TransformerLens."""
    from test_lean_forward import assert_close_real

    from polyglot_sae.model.lean_forward import lean_forward_for

    texts = TEXTS["en"][:2] + TEXTS["es"][::2]
    ids = [gemma.tokenizer(t)["input_ids"] for t in texts]
    lengths = [len(i) for i in ids]
    tokens = torch.full((len(ids), max(lengths)), gemma.tokenizer.pad_token_id)
    for row, i in enumerate(ids):
        tokens[row, : len(i)] = torch.tensor(i)
    captured = {}

    def keep(act, hook):  # noqa: ARG001 (TransformerLens passes the hook point)
        captured["acts"] = act

    with torch.inference_mode(), gemma.hooks(fwd_hooks=[(HOOK, keep)]):  # as hook_batches does
        gemma(tokens, stop_at_layer=13)
    assert_close_real(lean_forward_for(gemma, HOOK)(tokens), captured["acts"], lengths, tol=1e-5)
