"""Extraction and reduction on a tiny random model, against independent per-sentence paths."""

import os
import stat

import numpy as np
import polars as pl
import pytest
import torch
from conftest import make_jumprelu, sample_corpus

from polyglot_sae.extract import ExtractConfig, extract_sparse, token_table, tokenize
from polyglot_sae.atomic_io import read_metadata, write_parquet
from polyglot_sae.reduce import reduce_max

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def pairs():
    texts = sample_corpus(12)
    return pl.DataFrame({"pair_id": np.repeat(np.arange(12, dtype=np.uint32) * 7, 2),
                         "lang": ["en", "es"] * 12,
                         "text": [t for pair in zip(texts["en"], texts["es"]) for t in pair]},
                        schema={"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String})


@pytest.fixture(scope="module")
def sae(tiny_model):
    return make_jumprelu(tiny_model.cfg.d_model, 48)


def _reference_max(model, sae, text: str) -> np.ndarray:
    """Seed-style path: the full model with the SAE attached, one unpadded sentence at a time,
    max over tokens with BOS excluded."""
    tokens = model.to_tokens(text, prepend_bos=True)
    assert tokens[0, 0] == model.tokenizer.bos_token_id
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(tokens, saes=[sae])
    acts = cache[f"{HOOK}.hook_sae_acts_post"][0, 1:]
    return acts.max(0).values.numpy()


def test_sparse_extraction_equals_run_with_cache_with_saes(tiny_model, sae, pairs):
    acts = extract_sparse(tiny_model, sae, HOOK, pairs, ExtractConfig(batch_size=5))
    assert acts.schema == {"pair_id": pl.UInt32, "lang": pl.String, "token_pos": pl.UInt16,
                           "feature_id": pl.UInt32, "value": pl.Float32}
    assert (acts["value"] > 0).all() and (acts["token_pos"] > 0).all()  # BOS never kept
    maxed = acts.group_by("pair_id", "lang", "feature_id").agg(pl.col("value").max())
    checked = 0
    for row in pairs.iter_rows(named=True):
        ref = _reference_max(tiny_model, sae, row["text"])
        got = np.zeros_like(ref)
        sel = maxed.filter((pl.col("pair_id") == row["pair_id"]) & (pl.col("lang") == row["lang"]))
        got[sel["feature_id"].to_numpy()] = sel["value"].to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        checked += int((ref > 0).sum())
    assert checked > 50  # the comparison covered many firing features


def test_batching_does_not_change_results(tiny_model, sae, pairs):
    a = extract_sparse(tiny_model, sae, HOOK, pairs, ExtractConfig(batch_size=1))
    b = extract_sparse(tiny_model, sae, HOOK, pairs, ExtractConfig(batch_size=24))
    assert a.select(pl.exclude("value")).equals(b.select(pl.exclude("value")))
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_token_table_positions_line_up(tiny_model, pairs):
    tokens = token_table(tiny_model.tokenizer, tokenize(tiny_model.tokenizer, pairs, 256))
    first = tokens.filter((pl.col("pair_id") == 0) & (pl.col("lang") == "en"))
    assert first["token_pos"].to_list() == list(range(first.height))
    assert first["token_id"][0] == tiny_model.tokenizer.bos_token_id
    assert tiny_model.tokenizer.decode(first["token_id"].to_list()[1:]) == pairs["text"][0]


def test_reduce_matches_numpy_and_is_shard_invariant(tiny_model, sae, pairs, tmp_path):
    cfg = ExtractConfig(batch_size=4)
    ids = pairs["pair_id"].unique().sort().to_numpy()
    paths = []
    for i, chunk in enumerate(np.array_split(ids, 3)):
        part = pairs.filter(pl.col("pair_id").is_in(chunk))
        acts = extract_sparse(tiny_model, sae, HOOK, part, cfg)
        paths.append(write_parquet(acts, tmp_path / f"{i}.parquet", {"n_pairs": len(chunk)}))
    three, meta = reduce_max(paths)
    whole = extract_sparse(tiny_model, sae, HOOK, pairs, cfg)
    one, _ = reduce_max([write_parquet(whole, tmp_path / "all.parquet", {"n_pairs": len(ids)})])
    assert meta["n_pairs"] == 12 and three.equals(one)
    # independent reference: numpy max per (pair, lang, feature)
    ref: dict[tuple, float] = {}
    for p, l, f, v in whole.select("pair_id", "lang", "feature_id", "value").iter_rows():
        ref[(p, l, f)] = max(ref.get((p, l, f), 0.0), v)
    assert dict(zip(zip(*[one[c].to_list() for c in ("pair_id", "lang", "feature_id")]),
                    one["value"].to_list())) == ref


def test_parquet_write_is_atomic_and_keeps_provenance(tmp_path, monkeypatch):
    from polyglot_sae import atomic_io

    path = write_parquet(pl.DataFrame({"x": [1, 2]}), tmp_path / "t.parquet", {"model": "m", "n_pairs": 2})
    assert read_metadata(path) == {"model": "m", "n_pairs": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600

    def dies_mid_write(table, where, **kwargs):
        open(where, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.pq, "write_table", dies_mid_write)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(pl.DataFrame({"x": [3]}), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]  # no partial file left
    assert pl.read_parquet(path)["x"].to_list() == [1, 2]  # the finished file is untouched


def test_sae_quality_against_direct_computation(tiny_model, sae, pairs):
    from polyglot_sae.sae_eval import evaluate_sae

    quality = evaluate_sae(tiny_model, sae, HOOK, pairs, ExtractConfig(), batch_size=5)
    for lang in ("en", "es"):
        xs, losses, n_pred = [], 0.0, 0
        for text in pairs.filter(pl.col("lang") == lang)["text"]:
            tokens = tiny_model.to_tokens(text, prepend_bos=True)
            with torch.no_grad():
                _, cache = tiny_model.run_with_cache(tokens, names_filter=HOOK)
                loss = tiny_model(tokens, return_type="loss")  # mean over next-token predictions
            xs.append(cache[HOOK][0, 1:].numpy().astype(np.float64))  # BOS excluded
            losses += float(loss) * (tokens.shape[1] - 1)
            n_pred += tokens.shape[1] - 1
        x = np.concatenate(xs)
        with torch.no_grad():
            feats = sae.encode(torch.from_numpy(x).float())
            recon = sae.decode(feats).numpy().astype(np.float64)
        fve = 1 - ((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        q = quality[lang]
        assert q["tokens"] == x.shape[0]
        np.testing.assert_allclose(q["fve"], fve, rtol=1e-4)
        np.testing.assert_allclose(q["l0"], float((feats > 0).sum(1).float().mean()), rtol=1e-6)
        np.testing.assert_allclose(q["ce_clean"], losses / n_pred, rtol=1e-4)
        assert q["ce_spliced"] != q["ce_clean"]
