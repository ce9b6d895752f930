"""SAEs from every source, saved once in sae-lens' own format under resources/saes/{sae}/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from polyglot_sae.atomic_io import write_dir
from polyglot_sae.errors import InputError
from polyglot_sae.model.load import stop_layer


@dataclass(frozen=True)
class SAESourceConfig:
    """Where an SAE comes from (training has its own config: `model.training.TrainConfig`)."""

    # train: trained here (JumpReLU); pretrained: sae-lens release + id (hub, fetched by the
    # fetch_sae rule, hub.fetch); disk: an sae-lens folder; gemmascope_npz: a GemmaScope
    # params.npz (W_enc, W_dec, b_enc, b_dec, threshold)
    source: Literal["train", "pretrained", "disk", "gemmascope_npz"]
    # pretrained: the sae-lens release and SAE id, e.g. gemma-scope-2b-pt-res-canonical,
    # layer_20/width_16k/canonical
    release: str | None = None
    sae_id: str | None = None
    # disk / gemmascope_npz: the folder or file
    path: str | None = None


def sae_from_gemmascope_npz(path: str | Path, hook: str, model_name: str):
    """A JumpReLU SAE from GemmaScope's params.npz layout (W_enc is d_in x d_sae)."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    path = Path(path)
    with np.load(path) as npz:
        missing = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"} - set(npz.files)
        if missing:
            raise InputError(path, "arrays", f"missing {sorted(missing)} (has {npz.files})",
                             "use GemmaScope's params.npz with W_enc, W_dec, b_enc, b_dec, threshold")
        params = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in npz.files}
    d_in, d_sae = params["W_enc"].shape
    if params["W_dec"].shape != (d_sae, d_in):
        raise InputError(path, "W_dec", f"shape {tuple(params['W_dec'].shape)} does not match "
                         f"W_enc {(d_in, d_sae)}", "W_dec must be d_sae x d_in")
    # GemmaScope encodes x @ W_enc + b_enc: b_dec is not subtracted from the input first.
    cfg = JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=False)
    cfg.metadata.hook_name = hook
    cfg.metadata.model_name = model_name
    sae = JumpReLUSAE(cfg)
    sae.load_state_dict({k: params[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")})
    return sae


def import_sae(cfg: SAESourceConfig, hook: str, model_name: str, out_dir: str | Path) -> Path:
    """Bring a local, non-trained SAE (``disk``, ``gemmascope_npz``) into `out_dir` in sae-lens
    format. Pretrained SAEs never come here: the fetch rule (``hub.fetch.fetch_sae``, run where
    the hub is reachable) writes their folder, and this rule's jobs run offline."""
    if cfg.source == "disk":
        sae = load_sae(cfg.path)
    elif cfg.source == "gemmascope_npz":
        sae = sae_from_gemmascope_npz(cfg.path, hook, model_name)
    else:
        raise InputError("config", "saes[].source", f"{cfg.source!r} is not importable here",
                         "use disk or gemmascope_npz (train has its own rule; pretrained SAEs "
                         "are fetched by the fetch_sae rule)")
    return write_dir(sae.save_model, Path(out_dir))


def load_sae(path: str | Path, device: str = "cpu"):
    from sae_lens import SAE

    path = Path(path)
    if not (path / "cfg.json").exists():
        raise InputError(path, "cfg.json", "not an sae-lens SAE folder",
                         "point saes[].path at a folder written by SAE.save_model")
    sae = SAE.load_from_disk(path, device=device)
    sae.eval()
    return sae


def check_sae_fits(sae, model, hook: str, where: str) -> None:
    """The SAE reads the hook's activations: their widths must agree."""
    width = hook_width(model, hook)
    if sae.cfg.d_in != width:
        raise InputError(where, "d_in", f"the SAE reads vectors of width {sae.cfg.d_in} but "
                         f"{hook} has width {width}",
                         "use an SAE trained on this model and hook, or change saes[].hook")


def hook_width(model, hook: str) -> int:
    probe = model.to_tokens("a", prepend_bos=True)
    _, cache = model.run_with_cache(probe, names_filter=hook, stop_at_layer=stop_layer(hook))
    return int(cache[hook].shape[-1])

