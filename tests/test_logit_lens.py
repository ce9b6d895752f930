"""Logit lens: the unembedding identity, moments and classes vs numpy/scipy, the Mann-Whitney
enrichment vs scipy.stats.mannwhitneyu, token sets, the join with the bilingual scores, figures."""

from __future__ import annotations

import copy
import json

import numpy as np
import polars as pl
import pytest
import scipy.stats as st
import torch

from polyglot_sae.stats import bh_qvalues
from polyglot_sae.logit_lens import core as ll
from polyglot_sae.logit_lens import enrichment, join
from polyglot_sae.logit_lens import token_sets as ts
from polyglot_sae.errors import InputError

from conftest import make_jumprelu


def _tl_model(normalization_type, d_model=16, d_vocab=50, seed=0, eps=1e-5):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=d_model, n_ctx=8, d_head=8, n_heads=2,
                                  d_vocab=d_vocab, act_fn="gelu", seed=seed, eps=eps,
                                  normalization_type=normalization_type)
    return HookedTransformer(cfg)


def _randomise_final(model, seed=0):
    """Random final-norm weights and unembedding bias, so the identity tests more than w = 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ln = getattr(model, "ln_final", None)
        if ln is not None and hasattr(ln, "w"):
            ln.w.copy_(torch.randn(ln.w.shape, generator=g) * 2 + 0.5)
        if ln is not None and hasattr(ln, "b"):
            ln.b.copy_(torch.randn(ln.b.shape, generator=g))
        model.unembed.b_U.copy_(torch.randn(model.unembed.b_U.shape, generator=g))
    return model


def _check_identity(model):
    lens = ll.unembed_lens(model)
    x = torch.randn(2, 5, model.cfg.d_model) * 7 + 3  # offset: LayerNorm's centering matters
    with torch.no_grad():
        ln = getattr(model, "ln_final", None)
        expected = model.unembed(ln(x) if ln is not None else x)
        got = ll.normalise(lens, x) @ ll.effective_unembed(lens) + lens.bias
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    return lens


# --- the unembedding -------------------------------------------------------------------------

def test_unembed_identity_on_the_tiny_model(tiny_model):
    model = _randomise_final(copy.deepcopy(tiny_model))
    assert model.cfg.normalization_type == "LN"  # the tiny model's final norm
    lens = _check_identity(model)
    assert lens.norm == "LN" and lens.center
    assert lens.processing == ll.PROCESSING_NO
    # The lens folds g and the centering into the decoder rows; the same logits either way.
    d = torch.randn(4, model.cfg.d_model)
    torch.testing.assert_close(ll.logit_weights(lens, d), d @ ll.effective_unembed(lens),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["RMS", "RMSPre", "LNPre", None])
def test_unembed_identity_other_norms(norm):
    lens = _check_identity(_randomise_final(_tl_model(norm)))
    assert lens.norm == (norm or "none")
    assert lens.center == (norm == "LNPre")


def test_gemma_rmsnorm_gain_already_includes_the_plus_one():
    """TransformerLens' Gemma conversion stores norm.weight + 1 in ln_final.w, so the lens'
    gain is ln_final.w as is and reproduces HF Gemma-3's own final norm and head."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    from transformer_lens.pretrained.weight_conversions.gemma import convert_gemma_weights
    from types import SimpleNamespace

    hf_cfg = Gemma3TextConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=8, final_logit_softcapping=None)
    torch.manual_seed(0)
    hf = Gemma3ForCausalLM(hf_cfg).eval()
    with torch.no_grad():
        hf.model.norm.weight.normal_(0, 2)
    tl_cfg = SimpleNamespace(n_key_value_heads=1, d_mlp=32, d_model=16, n_layers=1, n_heads=2,
                             d_head=8, d_vocab=64, dtype=torch.float32, use_qk_norm=True,
                             use_normalization_before_and_after=True)
    state = convert_gemma_weights(hf, tl_cfg)
    torch.testing.assert_close(state["ln_final.w"], hf.model.norm.weight + 1)

    model = _tl_model("RMS", d_model=16, d_vocab=64, eps=hf_cfg.rms_norm_eps)
    with torch.no_grad():
        model.ln_final.w.copy_(state["ln_final.w"])
        model.unembed.W_U.copy_(state["unembed.W_U"])
        model.unembed.b_U.copy_(state["unembed.b_U"])
    lens = ll.unembed_lens(model)
    torch.testing.assert_close(lens.gain, model.ln_final.w)
    x = torch.randn(3, 16) * 20
    with torch.no_grad():
        expected = hf.lm_head(hf.model.norm(x))
        got = ll.normalise(lens, x) @ ll.effective_unembed(lens) + lens.bias
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_sae_width_must_match(tiny_model):
    lens = ll.unembed_lens(tiny_model)
    with pytest.raises(InputError, match="W_dec"):
        ll.analyse(lens, torch.zeros(3, tiny_model.cfg.d_model + 1))


# --- statistics ------------------------------------------------------------------------------

def _reference_logits(lens, W_dec):
    W_U = lens.W_U.double().numpy()
    d = W_dec.double().numpy()
    if lens.center:
        d = d - d.mean(1, keepdims=True)
    return (d * lens.gain.double().numpy()) @ W_U


def test_chunked_stats_equal_the_dense_reference(tiny_model):
    model = _randomise_final(copy.deepcopy(tiny_model), seed=3)
    lens = ll.unembed_lens(model)
    W_dec = make_jumprelu(model.cfg.d_model, 40).W_dec.detach().clone()
    W_dec[5] = 0.0  # a zero decoder row: constant weights
    config = ll.LensConfig(features_per_chunk=12, features_per_step=5, top_k=5)
    result = ll.analyse(lens, W_dec, lens_config=config)
    assert (result.provenance["features_per_block"], result.provenance["features_per_step"]) == (12, 5)
    assert result.provenance["lens"]["processing"] == ll.PROCESSING_NO
    s = result.stats
    assert s.height == 40 and s["feature_id"].to_list() == list(range(40))

    ref = _reference_logits(lens, W_dec)
    alive = np.arange(40) != 5
    np.testing.assert_allclose(s["mean"].to_numpy()[alive], ref.mean(1)[alive], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(s["std"].to_numpy(), ref.std(1), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(s["skewness"].to_numpy()[alive],
                               st.skew(ref, axis=1, bias=True)[alive], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(s["kurtosis"].to_numpy()[alive],
                               st.kurtosis(ref, axis=1, fisher=True, bias=True)[alive],
                               rtol=1e-3, atol=1e-4)
    top = np.array(s["top_ids"].to_list())
    bottom = np.array(s["bottom_ids"].to_list())
    np.testing.assert_array_equal(top[alive], np.argsort(-ref, axis=1)[:, :5][alive])
    np.testing.assert_array_equal(bottom[alive], np.argsort(ref, axis=1)[:, :5][alive])
    np.testing.assert_allclose(np.array(s["top_values"].to_list())[alive],
                               np.sort(ref, axis=1)[:, ::-1][:, :5][alive], rtol=1e-4, atol=1e-6)
    assert np.isnan(s["skewness"][5]) and s["class"][5] == "flat"

    # One chunk gives the same table (up to the matmul's blocking, which differs by batch size).
    whole = ll.analyse(lens, W_dec, lens_config=ll.LensConfig(top_k=5)).stats
    assert whole["top_ids"].to_list() == s["top_ids"].to_list() and whole["class"].equals(s["class"])
    for column in ("mean", "std", "skewness", "kurtosis"):
        np.testing.assert_allclose(whole[column].to_numpy(), s[column].to_numpy(), rtol=1e-5, atol=1e-8)


def test_moments_match_scipy_on_skewed_rows():
    rng = np.random.default_rng(0)
    rows = np.stack([rng.normal(size=5000), rng.gamma(0.5, size=5000), -rng.lognormal(size=5000),
                     np.concatenate([rng.normal(-3, 0.5, 2500), rng.normal(3, 0.5, 2500)])])
    m = ll.moments(torch.from_numpy(rows.astype(np.float32)))
    x = rows.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(m["skewness"], st.skew(x, axis=1), rtol=1e-10)
    np.testing.assert_allclose(m["kurtosis"], st.kurtosis(x, axis=1), rtol=1e-10)
    np.testing.assert_allclose(m["std"], x.std(axis=1), rtol=1e-12)


def test_class_rule():
    cfg = ll.ClassConfig()
    stats = pl.DataFrame({
        "skewness": [2.0, -2.0, 0.0, 0.1, 0.0, float("nan"), 0.2],
        "kurtosis": [20.0, 20.0, -1.5, 0.2, 30.0, float("nan"), 4.9],
    }).with_columns(((pl.col("skewness") ** 2 + 1) / (pl.col("kurtosis") + 3)).alias("bimodality"))
    got = ll.classify(stats, cfg).cast(pl.String).to_list()
    # heavy-tailed: by the sign of the skew; symmetric heavy tails are no prediction feature
    assert got == ["prediction", "suppression", "partition", "other", "other", "flat", "other"]


# --- enrichment ------------------------------------------------------------------------------

@pytest.mark.parametrize("continuity", [True, False])
def test_mann_whitney_matches_scipy(continuity):
    rng = np.random.default_rng(1)
    n, c = 300, 6
    values = rng.normal(size=(c, n))
    values[0] = rng.integers(0, 12, n)  # heavy ties
    values[1] = np.round(values[1], 1)  # some ties
    values[2, :40] += 1.0  # a shifted set
    masks = np.zeros((n, 3))
    masks[:40, 0] = 1
    masks[rng.choice(n, 7, replace=False), 1] = 1
    masks[rng.random(n) < 0.5, 2] = 1
    sums, ties = enrichment.rank_sums(torch.from_numpy(values), torch.from_numpy(masks))
    n1 = masks.sum(0)
    u1 = sums - n1 * (n1 + 1) / 2
    pg, pl_ = enrichment.mann_whitney_p(u1, n1[None], (n - n1)[None], ties[:, None], continuity=continuity)
    for row in range(c):
        for s in range(3):
            x, y = values[row, masks[:, s] == 1], values[row, masks[:, s] == 0]
            for alt, p in (("greater", pg), ("less", pl_)):
                ref = st.mannwhitneyu(x, y, alternative=alt, method="asymptotic",
                                      use_continuity=continuity)
                assert u1[row, s] == ref.statistic
                assert abs(p[row, s] - ref.pvalue) < 1e-6
            two = st.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic",
                                  use_continuity=continuity).pvalue
            assert abs(min(1.0, 2 * min(pg[row, s], pl_[row, s])) - two) < 1e-6


def test_enrichment_table_matches_scipy_and_bh(tiny_model):
    lens = ll.unembed_lens(tiny_model)
    vocab = ts.vocabulary(tiny_model.tokenizer, lens.d_vocab)
    sets = ts.regex_sets(vocab)
    W_dec = make_jumprelu(tiny_model.cfg.d_model, 12, seed=2).W_dec.detach()
    result = ll.analyse(lens, W_dec, token_sets=sets,
                        lens_config=ll.LensConfig(features_per_chunk=5))
    enr = result.enrichment
    tested = [n for n in sets.names if n not in result.provenance["skipped_sets"]]
    assert set(result.provenance["skipped_sets"]) == {"leading_space", "all_caps", "accented",
                                                      "enye"}  # empty on a byte vocabulary
    assert enr.height == 12 * len(tested)
    ref = _reference_logits(lens, W_dec)[:, vocab.universe]
    for row in enr.filter(pl.col("feature_id").is_in([0, 7, 11])).iter_rows(named=True):
        mask = sets.mask(row["set_name"])[vocab.universe]
        x, y = ref[row["feature_id"], mask], ref[row["feature_id"], ~mask]
        r = st.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
        assert row["u"] == r.statistic and abs(row["p_greater"] - r.pvalue) < 1e-6
        assert row["auc"] == pytest.approx(r.statistic / (x.size * y.size))
        assert row["n_set"] == x.size and row["n_rest"] == y.size
    for name in tested:
        part = enr.filter(pl.col("set_name") == name).sort("feature_id")
        np.testing.assert_allclose(part["q_greater"].to_numpy(), bh_qvalues(part["p_greater"].to_numpy()))
        np.testing.assert_allclose(part["q_less"].to_numpy(), bh_qvalues(part["p_less"].to_numpy()))
    every = ll.analyse(lens, W_dec, token_sets=sets,
                       enrichment_config=enrichment.EnrichmentConfig(bh_family="all")).enrichment
    np.testing.assert_allclose(every["q_greater"].to_numpy(),
                               bh_qvalues(every["p_greater"].to_numpy()))


def test_planted_feature_is_found_and_random_ones_mostly_not(tiny_model):
    lens = ll.unembed_lens(tiny_model)
    vocab = ts.vocabulary(tiny_model.tokenizer, lens.d_vocab)
    rng = np.random.default_rng(4)
    members = rng.choice(np.flatnonzero(vocab.universe), 25, replace=False)
    sets, unknown = ts.user_sets({"planted": [int(i) for i in members]}, vocab)
    assert unknown == {"planted": []}
    # Decoder rows whose logit weights best match "+1 on the set, 0 elsewhere" (least squares
    # through the effective unembedding), next to random rows.
    target = np.zeros(lens.d_vocab)
    target[members] = 1.0
    W_eff = ll.effective_unembed(lens).double().numpy()
    planted = np.linalg.lstsq(W_eff.T, target, rcond=None)[0]
    # Undo the gain: the lens multiplies decoder rows by g (and centres them) before W_U.
    planted = planted / lens.gain.double().numpy()
    random_rows = rng.normal(size=(60, lens.d_model))
    W_dec = torch.tensor(np.vstack([planted[None] * np.array([[1.0], [2.0], [0.5]]), random_rows]),
                         dtype=torch.float32)
    enr = ll.analyse(lens, W_dec, token_sets=sets).enrichment.sort("feature_id")
    q = enr["q_greater"].to_numpy()
    assert (q[:3] < 1e-6).all() and (enr["auc"].to_numpy()[:3] > 0.8).all()
    assert (q[3:] < 0.05).mean() <= 0.1
    q_dir = enr["q_dir_greater"].to_numpy()
    assert (q_dir[:3] < 1e-3).all() and (q_dir[3:] < 0.05).mean() <= 0.1
    # Suppression is the mirror image: the negated planted row is found by p_less.
    neg = ll.analyse(lens, -W_dec[:1], token_sets=sets).enrichment
    assert neg["p_less"][0] < 1e-6 and neg["auc"][0] < 0.2


def test_direction_null(tiny_model):
    """The direction null's columns are the AUCs of null_directions(...) through the same lens,
    and it separates a planted feature from random ones."""
    lens = ll.unembed_lens(tiny_model)
    vocab = ts.vocabulary(tiny_model.tokenizer, lens.d_vocab)
    sets = ts.regex_sets(vocab)
    W_dec = make_jumprelu(tiny_model.cfg.d_model, 30, seed=5).W_dec.detach()
    config = enrichment.EnrichmentConfig(null_directions=64, seed=3)
    enr = ll.analyse(lens, W_dec, token_sets=sets, enrichment_config=config).enrichment
    directions = enrichment.null_directions(lens.d_model, 64, 3)
    null = ll.analyse(lens, directions, token_sets=sets,
                      enrichment_config=enrichment.EnrichmentConfig(null_directions=0)).enrichment
    assert "z_dir" not in null.columns
    for name in ("capitalised", "non_ascii"):
        auc = null.filter(pl.col("set_name") == name)["auc"].to_numpy()
        part = enr.filter(pl.col("set_name") == name).sort("feature_id")
        np.testing.assert_allclose(part["auc_null_mean"].to_numpy(), auc.mean(), rtol=1e-12)
        np.testing.assert_allclose(part["auc_null_sd"].to_numpy(), auc.std(ddof=1), rtol=1e-12)
        z = (part["auc"].to_numpy() - auc.mean()) / auc.std(ddof=1)
        np.testing.assert_allclose(part["p_dir_greater"].to_numpy(), st.norm.sf(z), rtol=1e-9)
        np.testing.assert_allclose(part["q_dir_greater"].to_numpy(),
                                   bh_qvalues(st.norm.sf(z)), rtol=1e-9)
    # Random decoder rows are random directions: few pass the direction null.
    assert (enr["q_dir_greater"].to_numpy() < 0.05).mean() <= 0.1


# --- token sets ------------------------------------------------------------------------------

SP_TOKENS = ["<pad>", "<bos>", "▁casa", "Casa", "▁THE", "▁123", "...", "▁niño", "está", "<0xC3>",
             "<0x41>", "<unused5>", "▁¿", "▁The", "the", "ÑU"]


def _masks(vocab, config=ts.RegexSetConfig()):
    sets = ts.regex_sets(vocab, config)
    return {n: [vocab.strings[i] for i in np.flatnonzero(sets.mask(n))] for n in sets.names}


def test_regex_sets_on_sentencepiece_strings():
    vocab = ts.vocabulary_from_strings(SP_TOKENS, special_ids=[0, 1])
    assert vocab.marker == "sentencepiece"
    assert vocab.surfaces[2] == " casa" and vocab.surfaces[9] == "\ufffd" and vocab.surfaces[10] == "A"
    assert not vocab.universe[[0, 1, 11]].any() and vocab.universe[2:11].all()
    m = _masks(vocab)
    assert m["leading_space"] == ["▁casa", "▁THE", "▁123", "▁niño", "▁¿", "▁The"]
    assert m["capitalised"] == ["Casa", "▁THE", "<0x41>", "▁The", "ÑU"]
    assert m["all_caps"] == ["▁THE", "ÑU"]
    assert m["digits"] == ["▁123"]
    assert m["punctuation"] == ["...", "▁¿"]
    assert m["non_ascii"] == ["▁niño", "está", "<0xC3>", "▁¿", "ÑU"]
    assert m["accented"] == ["está"]
    assert m["enye"] == ["▁niño", "ÑU"]


def test_regex_sets_on_byte_level_strings(tiny_model):
    # GPT-2 byte-level: Ġ is a space, "Ã±" are the two bytes of ñ.
    vocab = ts.vocabulary_from_strings(["Ġcasa", "ĠniÃ±o", "Ã", "ĠTHE", "Ġ", "!!", "abc", "Ġx"] * 2,
                                       config=ts.RegexSetConfig(marker="byte_level"))
    assert vocab.surfaces[:5] == (" casa", " niño", "\ufffd", " THE", " ")
    m = _masks(vocab)
    assert m["leading_space"][:4] == ["Ġcasa", "ĠniÃ±o", "ĠTHE", "Ġx"]
    assert m["enye"][:1] == ["ĠniÃ±o"] and m["non_ascii"][:2] == ["ĠniÃ±o", "Ã"]
    # The tiny model's tokenizer is byte-level: read from its decoder, not guessed.
    tiny = ts.vocabulary(tiny_model.tokenizer, tiny_model.cfg.d_vocab)
    assert tiny.marker == "byte_level" and tiny.size == tiny_model.cfg.d_vocab
    assert tiny.surfaces[tiny.strings.index("Ġ")] == " "
    assert tiny.universe.sum() == tiny.size - len(tiny.special_ids)


def test_vocab_strings_pads_or_trims_to_the_unembedding(tiny_model):
    tok = tiny_model.tokenizer
    strings, note = ts.vocab_strings(tok, len(tok) + 3)
    assert len(strings) == len(tok) + 3 and strings[-1] == "" and "padding" in note
    strings, note = ts.vocab_strings(tok, len(tok) - 2)
    assert len(strings) == len(tok) - 2 and "dropped" in note
    vocab = ts.vocabulary(tok, len(tok) + 3)
    assert not vocab.universe[-3:].any()


def _token_table(rows):
    """rows: (lang, token_id, count)."""
    out = [(0, lang, i, tid, f"t{tid}") for lang, tid, cnt in rows for i in range(cnt)]
    return pl.DataFrame(out, schema={"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
                                     "token_id": pl.UInt32, "token_str": pl.String}, orient="row")


def test_language_sets_from_a_token_table():
    vocab = ts.vocabulary_from_strings([f"t{i}" for i in range(10)], special_ids=[0])
    table = _token_table([
        ("es", 1, 10),                   # only Spanish
        ("en", 2, 19), ("es", 2, 1),     # 95% English
        ("en", 3, 5), ("es", 3, 5),      # shared
        ("es", 4, 3),                    # Spanish but too rare
        ("es", 0, 50), ("en", 0, 50),    # special: never in a set
        ("en", 5, 30), ("fr", 6, 40),    # a language outside the config is ignored
    ])
    cfg = ts.LanguageSetConfig(min_count=5, min_share=0.9, per_language_rate=False)
    sets, detail = ts.language_sets(table, vocab, cfg)
    assert sets.names == ("lang_en", "lang_es")
    assert np.flatnonzero(sets.mask("lang_es")).tolist() == [1]
    assert np.flatnonzero(sets.mask("lang_en")).tolist() == [2, 5]
    row = detail.filter(pl.col("token_id") == 2).row(0, named=True)
    assert (row["n_en"], row["n_es"], row["share_en"], row["lang_set"]) == (19, 1, 0.95, "lang_en")
    assert 0 not in detail["token_id"].to_list() and 6 not in detail["token_id"].to_list()
    # Rates per language: English has 54 (non-special) tokens here and Spanish 19, so token 2's
    # one Spanish occurrence weighs more and its English share drops to 0.87.
    rated, _ = ts.language_sets(table, vocab, ts.LanguageSetConfig(min_count=5, min_share=0.9))
    assert np.flatnonzero(rated.mask("lang_en")).tolist() == [5]
    with pytest.raises(InputError, match="token_str"):
        ts.language_sets(table.with_columns(pl.lit("x").alias("token_str")), vocab, cfg)
    with pytest.raises(InputError, match="de"):
        ts.language_sets(table, vocab, ts.LanguageSetConfig(langs=("en", "de")))


def test_user_sets_report_unknown_tokens(tmp_path):
    vocab = ts.vocabulary_from_strings(SP_TOKENS, special_ids=[0, 1])
    path = tmp_path / "sets.json"
    path.write_text(json.dumps({"words": ["▁casa", " niño", 3, "▁perro", 999],
                                "specials": ["<bos>", "▁The"]}), encoding="utf-8")
    sets, unknown = ts.load_user_sets(path, vocab)
    assert [vocab.strings[i] for i in np.flatnonzero(sets.mask("words"))] == ["▁casa", "Casa", "▁niño"]
    assert unknown == {"words": ["▁perro", 999], "specials": []}
    assert np.flatnonzero(sets.mask("specials")).tolist() == [13]  # <bos> is special
    assert "2 unknown" in sets.definitions["words"]
    merged = ts.regex_sets(vocab).merge(sets)
    assert merged.names[-2:] == ("words", "specials")
    assert merged.to_frame().filter(pl.col("set_name") == "words")["token_id"].to_list() == [2, 3, 7]
    for bad, match in [('{"x": ["▁nada"]}', "no entry"), ('["▁casa"]', "top level"),
                       ('{"x": [1.5]}', "neither"), ('{"bad name": [2]}', "plain name"), ("{", "JSON")]:
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(InputError, match=match):
            ts.load_user_sets(path, vocab)


# --- join with the bilingual scores ----------------------------------------------------------

LANGS = ["es", "en"]

def _join_inputs():
    scores = pl.DataFrame({"feature_id": pl.Series(range(6), dtype=pl.UInt32),
                           "q_value": [0.01, 0.02, 0.5, None, 0.9, 0.001],
                           "dead": [False, False, False, True, False, False],
                           "rank": [0, 1, 3, None, 4, 2]})
    q_es = [0.001, 0.001, 0.5, 0.001, 0.2, 0.9]
    q_en = [0.001, 0.5, 0.01, 0.001, 0.2, 0.001]
    auc_en = [0.8, 0.5, 0.7, 0.8, 0.5, 0.4]  # feature 5: significant but AUC < 0.5
    rows = [(f, "lang_es", q_es[f], 0.8) for f in range(6)] + [(f, "lang_en", q_en[f], auc_en[f])
                                                                for f in range(6)]
    enrichment = pl.DataFrame(rows, schema={"feature_id": pl.UInt32, "set_name": pl.String,
                                            "q_dir_greater": pl.Float64, "auc": pl.Float64},
                              orient="row")
    # The token null calls everything significant here; the direction null decides by default.
    return scores, enrichment.with_columns(pl.lit(1e-9).alias("q_greater"))


def test_join_bilingual():
    scores, enrichment = _join_inputs()
    per_feature, crosstab = join.join_bilingual(scores, enrichment, LANGS)
    assert per_feature["group"].to_list() == ["bilingual", "bilingual", "other", "dead", "other",
                                              "bilingual"]
    assert per_feature["promotes"].cast(pl.String).to_list() == ["several", "es", "en", "several",
                                                                 "neither", "neither"]
    cell = {(g, str(p)): (n, s) for g, p, n, s in crosstab.iter_rows()}
    assert len(cell) == 8
    assert cell[("bilingual", "several")] == (1, pytest.approx(1 / 3))
    assert cell[("bilingual", "neither")][0] == 1 and cell[("other", "en")][0] == 1
    assert cell[("other", "several")] == (0, 0.0)
    top2, _ = join.join_bilingual(scores, enrichment, LANGS, join.JoinConfig(bilingual_top_k=2))
    assert top2["group"].to_list()[:3] == ["bilingual", "bilingual", "other"]
    assert top2["group"][5] == "other"
    token, _ = join.join_bilingual(scores, enrichment, LANGS, join.JoinConfig(null="token"))
    assert token["promotes"].cast(pl.String).to_list() == ["several", "es", "several", "several",
                                                           "es", "es"]
    with pytest.raises(InputError, match="lang_es"):
        join.join_bilingual(scores, enrichment.filter(pl.col("set_name") == "lang_en"), LANGS)
    with pytest.raises(InputError, match="q_dir_greater"):
        join.join_bilingual(scores, enrichment.drop("q_dir_greater"), LANGS)


def test_join_takes_any_languages():
    """Three languages: promotes names the one language, or several, or neither."""
    scores, enrichment = _join_inputs()
    fr = enrichment.filter(pl.col("set_name") == "lang_en").with_columns(
        set_name=pl.lit("lang_fr"), q_dir_greater=pl.Series([0.5, 0.5, 0.5, 0.5, 0.001, 0.5]))
    per_feature, crosstab = join.join_bilingual(scores, pl.concat([enrichment, fr]),
                                                ["es", "en", "fr"])
    assert per_feature["promotes"].cast(pl.String).to_list() == ["several", "es", "en",
                                                                 "several", "neither", "neither"]
    assert {"promotes_fr", "auc_fr", "q_fr"} <= set(per_feature.columns)
    assert crosstab.height == 2 * 5  # es, en, fr, several, neither per group


# --- figures and files -----------------------------------------------------------------------

def test_figures_and_tables_are_written(tiny_model, tmp_path):
    from polyglot_sae.atomic_io import read_metadata
    from polyglot_sae.logit_lens.plots import (plot_language_promotion, plot_logit_histogram,
                                               plot_skew_kurtosis)

    lens = ll.unembed_lens(tiny_model)
    vocab = ts.vocabulary(tiny_model.tokenizer, lens.d_vocab)
    sets = ts.regex_sets(vocab)
    W_dec = make_jumprelu(tiny_model.cfg.d_model, 16).W_dec.detach()
    result = ll.analyse(lens, W_dec, token_sets=sets)
    ll.write_result(result, tmp_path / "stats.parquet", tmp_path / "enrichment.parquet", sae="tiny")
    meta = read_metadata(tmp_path / "stats.parquet")
    assert meta["lens"]["processing"] == ll.PROCESSING_NO and meta["sae"] == "tiny"
    assert pl.read_parquet(tmp_path / "enrichment.parquet").height == result.enrichment.height

    assert plot_skew_kurtosis(result.stats, tmp_path / "a.png").stat().st_size > 10_000
    weights = ll.logit_weights(lens, W_dec[3:4])[0].numpy()
    path = plot_logit_histogram(weights, sets.mask("capitalised"), tmp_path / "b.png", feature_id=3,
                                set_name="capitalised", universe=vocab.universe, auc=0.61, q_value=0.2)
    assert path.stat().st_size > 10_000
    _, crosstab = join.join_bilingual(*_join_inputs(), LANGS)
    assert plot_language_promotion(crosstab, tmp_path / "c.png", LANGS).stat().st_size > 10_000
    with pytest.raises(InputError, match="set"):
        plot_logit_histogram(weights, np.zeros_like(weights, dtype=bool), tmp_path / "d.png",
                             feature_id=3, set_name="none")
