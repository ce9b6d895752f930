import numpy as np
import pytest
import torch
from conftest import make_jumprelu

from polyglot_sae.errors import InputError
from polyglot_sae.model.load import check_hook, stop_layer
from polyglot_sae.model.training import TrainConfig, train_jumprelu
from polyglot_sae.model.saes import SAESourceConfig, check_sae_fits, import_sae, load_sae


def _gemmascope_params(d_in=32, d_sae=40, seed=0):
    rng = np.random.default_rng(seed)
    return {"W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
            "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32),
            "b_enc": rng.normal(size=d_sae).astype(np.float32),
            "b_dec": rng.normal(size=d_in).astype(np.float32),
            "threshold": np.abs(rng.normal(size=d_sae)).astype(np.float32) * 2}


def test_gemmascope_npz_import_matches_the_reference_jumprelu(tmp_path):
    params = _gemmascope_params()
    np.savez(tmp_path / "params.npz", **params)
    out = import_sae(SAESourceConfig(source="gemmascope_npz", path=str(tmp_path / "params.npz")),
                     "blocks.1.hook_resid_post", "tiny", tmp_path / "sae")
    sae = load_sae(out)
    x = np.random.default_rng(1).normal(size=(16, 32)).astype(np.float32)
    # GemmaScope's reference: pre = x W_enc + b_enc; acts = pre * (pre > threshold); recon = acts W_dec + b_dec
    pre = x @ params["W_enc"] + params["b_enc"]
    acts = pre * (pre > params["threshold"])
    recon = acts @ params["W_dec"] + params["b_dec"]
    with torch.no_grad():
        got = sae.encode(torch.from_numpy(x))
        np.testing.assert_allclose(got.numpy(), acts, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sae.decode(got).numpy(), recon, rtol=1e-4, atol=1e-4)
    assert (acts > 0).any() and (acts == 0).any()


def test_gemmascope_npz_missing_arrays_is_a_clear_error(tmp_path):
    params = _gemmascope_params()
    del params["threshold"]
    np.savez(tmp_path / "params.npz", **params)
    with pytest.raises(InputError, match=r"params.npz: arrays: missing \['threshold'\]"):
        import_sae(SAESourceConfig(source="gemmascope_npz", path=str(tmp_path / "params.npz")),
                   "blocks.1.hook_resid_post", "tiny", tmp_path / "sae")
    assert not (tmp_path / "sae").exists()


def test_pretrained_and_trained_saes_are_not_imported(tmp_path):
    """A pretrained SAE's folder is the fetch_sae rule's (it runs where the hub is reachable;
    build_sae jobs run offline), a trained one the trainer's: import_sae refuses both."""
    for cfg in (SAESourceConfig(source="pretrained", release="r", sae_id="i"),
                SAESourceConfig(source="train")):
        with pytest.raises(InputError, match="not importable here.*fetch_sae"):
            import_sae(cfg, "blocks.1.hook_resid_post", "tiny", tmp_path / "sae")
    assert not (tmp_path / "sae").exists()


def test_disk_sae_roundtrip_and_width_check(tiny_model, tmp_path):
    wrong = make_jumprelu(tiny_model.cfg.d_model + 8, 16)
    wrong.save_model(tmp_path / "wrong")
    out = import_sae(SAESourceConfig(source="disk", path=str(tmp_path / "wrong")),
                     "blocks.1.hook_resid_post", "tiny", tmp_path / "imported")
    sae = load_sae(out)
    torch.testing.assert_close(sae.W_enc, wrong.W_enc)
    with pytest.raises(InputError, match=r"d_in: the SAE reads vectors of width 40 but "
                       r"blocks.1.hook_resid_post has width 32"):
        check_sae_fits(sae, tiny_model, "blocks.1.hook_resid_post", str(out))


def test_unknown_hook_is_named(tiny_model):
    with pytest.raises(InputError, match="no hook named 'blocks.7.hook_resid_post'"):
        check_hook(tiny_model, "blocks.7.hook_resid_post")
    check_hook(tiny_model, "blocks.1.hook_resid_post")


def test_stop_layer():
    assert stop_layer("blocks.12.hook_resid_post") == 13
    assert stop_layer("blocks.0.attn.hook_z") == 1
    assert stop_layer("hook_embed") is None


def test_training_recovers_a_sparse_dictionary():
    """Data made of 3-sparse combinations of 64 directions: the trained SAE must be sparse and
    reconstruct it well (a broken trainer or a wrong norm fold fails this)."""
    gen = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(64, 32, generator=gen), dim=1) * 400
    codes = torch.zeros(30000, 64)
    idx = torch.stack([torch.randperm(64, generator=gen)[:3] for _ in range(30000)])
    codes.scatter_(1, idx, torch.rand(30000, 3, generator=gen) + 0.5)
    acts = codes @ atoms + 50
    sae, info = train_jumprelu(acts, TrainConfig(d_sae=128, epochs=4, batch_size=512, lr=3e-3),
                               hook="blocks.0.hook_resid_post", model_name="synthetic")
    with torch.no_grad():
        x = acts[:2000]
        feats = sae.encode(x)
        recon = sae.decode(feats)
    fve = 1 - ((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    l0 = (feats > 0).float().sum(1).mean()
    assert fve > 0.8, fve
    assert l0 < 40, l0  # from ~64 (half the latents) at initialisation
    assert info["steps"] == 30000 * 4 // 512
