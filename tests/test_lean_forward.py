"""The lean Gemma-2/3 forward against TransformerLens' own `blocks.L.hook_resid_post`."""

import copy

import pytest
import torch
from conftest import N_LAYERS, tiny_gemma
from transformer_lens import HookedTransformer, HookedTransformerConfig

from polyglot_sae.model.lean_forward import LeanForward, lean_forward_for

# Right-padded rows of different lengths; several are longer than the window of 4 tokens
LENGTHS = [11, 7, 3, 9]


@pytest.fixture(scope="module")
def gemma2():
    return tiny_gemma("google/gemma-2-2b", attn_scores_soft_cap=3.0)


@pytest.fixture(scope="module")
def gemma3():
    return tiny_gemma("google/gemma-3-270m")


def padded_batch(lengths: list[int], d_vocab: int, pad: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    tokens = torch.full((len(lengths), max(lengths)), pad)
    for row, n in enumerate(lengths):
        tokens[row, :n] = torch.randint(1, d_vocab, (n,), generator=gen)
    return tokens


def tl_resid_post(model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    hook = f"blocks.{layer}.hook_resid_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook, stop_at_layer=layer + 1)
    return cache[hook]


def real_error(got: torch.Tensor, ref: torch.Tensor, lengths: list[int]) -> float:
    """Largest error on real tokens, relative to the largest component at that position (the
    residual stream's scale differs a lot between positions)."""
    errors = []
    for row, n in enumerate(lengths):
        diff = (got[row, :n].float() - ref[row, :n].float()).abs()
        errors.append((diff / ref[row, :n].float().abs().amax(-1, keepdim=True)).max())
    return float(torch.stack(errors).max())


def assert_close_real(got, ref, lengths, tol):
    for row, n in enumerate(lengths):
        scale = ref[row, :n].abs().amax(-1, keepdim=True)
        torch.testing.assert_close(got[row, :n] / scale, ref[row, :n] / scale, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_equals_transformer_lens_at_every_layer(name, request):
    model = request.getfixturevalue(name)
    tokens = padded_batch(LENGTHS, model.cfg.d_vocab)
    for layer in range(N_LAYERS):
        lean = lean_forward_for(model, f"blocks.{layer}.hook_resid_post")
        assert isinstance(lean, LeanForward)
        got = lean(tokens)
        assert got.shape == (len(LENGTHS), max(LENGTHS), model.cfg.d_model)
        assert got.dtype == torch.float32
        assert_close_real(got, tl_resid_post(model, tokens, layer), LENGTHS, tol=1e-5)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_padding_does_not_reach_real_tokens(name, request):
    model = request.getfixturevalue(name)
    tokens = padded_batch(LENGTHS, model.cfg.d_vocab)
    lean = lean_forward_for(model, f"blocks.{N_LAYERS - 1}.hook_resid_post")
    batched = lean(tokens)
    for row, n in enumerate(LENGTHS):
        alone = lean(tokens[row : row + 1, :n])
        assert_close_real(batched[row : row + 1, :n], alone, [n], tol=1e-5)


@pytest.mark.parametrize(("name", "override"), [
    ("gemma2", {"window_size": 64}),  # the sliding window of local layers
    ("gemma2", {"attn_scores_soft_cap": -1.0}),  # the soft-cap
    ("gemma3", {"window_size": 64}),
    ("gemma3", {"rotary_base_local": 1_000_000}),  # the local layers' own rotary base
])
def test_the_comparison_exercises(name, override, request):
    """Each option matters on these inputs: a lean forward that ignored it would fail above."""
    model = request.getfixturevalue(name)
    other = HookedTransformer(HookedTransformerConfig(**{**model.cfg.to_dict(), **override}))
    other.load_state_dict({k: v for k, v in model.state_dict().items() if "rotary" not in k},
                          strict=False)  # rotary tables: other's own
    tokens = padded_batch(LENGTHS, model.cfg.d_vocab)
    layer = N_LAYERS - 1
    assert real_error(tl_resid_post(other, tokens, layer), tl_resid_post(model, tokens, layer),
                      LENGTHS) > 1e-3


def test_folded_pre_norms_and_attention_heads_without_groups():
    model = tiny_gemma("google/gemma-3-270m", normalization_type="RMSPre", n_key_value_heads=None)
    tokens = padded_batch(LENGTHS, model.cfg.d_vocab)
    for layer in (0, N_LAYERS - 1):
        got = lean_forward_for(model, f"blocks.{layer}.hook_resid_post")(tokens)
        assert_close_real(got, tl_resid_post(model, tokens, layer), LENGTHS, tol=1e-5)


def test_rotary_tables_grow_past_transformer_lens_initial_cache():
    """TL caches rotary tables for 2048 positions and extends them on demand; so does this."""
    model = tiny_gemma("google/gemma-3-270m", n_layers=2, attn_types=["local", "global"],
                       n_ctx=4096)
    lean = lean_forward_for(model, "blocks.1.hook_resid_post")
    tokens = padded_batch([2100], model.cfg.d_vocab)
    assert_close_real(lean(tokens), tl_resid_post(model, tokens, 1), [2100], tol=1e-5)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_bfloat16_is_as_close_to_float32_as_transformer_lens(name, request):
    model = request.getfixturevalue(name)
    half = copy.deepcopy(model).to(torch.bfloat16, print_details=False)
    tokens = padded_batch(LENGTHS, model.cfg.d_vocab)
    layer = N_LAYERS - 1
    exact = tl_resid_post(model, tokens, layer)
    got = lean_forward_for(half, f"blocks.{layer}.hook_resid_post")(tokens)
    assert got.dtype == torch.bfloat16
    tl_error = real_error(tl_resid_post(half, tokens, layer), exact, LENGTHS)
    lean_error = real_error(got, exact, LENGTHS)
    # bfloat16 keeps ~3 digits: both are off by a few percent of the position's scale here
    assert lean_error < 0.1
    assert lean_error <= 1.5 * tl_error + 0.005, (lean_error, tl_error)


def test_unsupported_models_and_hooks_give_none(gemma3):
    tiny_ln = HookedTransformer(HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64, d_vocab=50,
        act_fn="gelu", normalization_type="LN"))
    assert lean_forward_for(tiny_ln, "blocks.1.hook_resid_post") is None
    gemma1_like = tiny_gemma("google/gemma-3-270m", use_normalization_before_and_after=False)
    assert lean_forward_for(gemma1_like, "blocks.1.hook_resid_post") is None
    for hook in ("blocks.0.attn.hook_z", "blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out",
                 f"blocks.{N_LAYERS}.hook_resid_post", "hook_embed", "ln_final.hook_normalized"):
        assert lean_forward_for(gemma3, hook) is None, hook
    # hooks on the model would be skipped: refuse rather than ignore them
    with gemma3.hooks(fwd_hooks=[("blocks.0.hook_mlp_out", lambda act, hook: act)]):  # noqa: ARG005
        assert lean_forward_for(gemma3, "blocks.1.hook_resid_post") is None
    assert lean_forward_for(gemma3, "blocks.1.hook_resid_post") is not None


def test_compiled_blocks_equal_eager(gemma2, gemma3):
    """`extract.compile`: the blocks really are compiled, and give the eager numbers for both
    attention kinds and several batch shapes (the compiled code turns dynamic on the way)."""
    from torch._dynamo.utils import counters

    hook = f"blocks.{N_LAYERS - 1}.hook_resid_post"
    graphs = counters["stats"]["unique_graphs"]
    for model in (gemma2, gemma3):
        eager, compiled = lean_forward_for(model, hook), lean_forward_for(model, hook, compile=True)
        for lengths in (LENGTHS, [5, 3], [20, 17, 2]):
            tokens = padded_batch(lengths, model.cfg.d_vocab)
            assert_close_real(compiled(tokens), eager(tokens), lengths, tol=1e-5)
    assert counters["stats"]["unique_graphs"] > graphs
