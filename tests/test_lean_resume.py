"""The resumed blocks (a clean run, then edited windows on its keys and values) against
TransformerLens' own `start_at_layer` forward over whole sequences."""

import pytest
import torch
from conftest import N_LAYERS, tiny_gemma

from polyglot_sae.model.lean_resume import LeanResume

FIRST = 2  # resumed before block 2: blocks.1.hook_resid_post
LENGTHS = [13, 9]


@pytest.fixture(scope="module", params=["gemma2", "gemma3"])
def model(request):
    if request.param == "gemma2":
        return tiny_gemma("google/gemma-2-2b", attn_scores_soft_cap=3.0)
    return tiny_gemma("google/gemma-3-270m")


def _tl(model, acts):
    with torch.no_grad():
        return model(acts, start_at_layer=FIRST, stop_at_layer=N_LAYERS)


def _acts(model):
    """Right-padded hook activations of random sentences (the stream before block FIRST)."""
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(1, model.cfg.d_vocab, (len(LENGTHS), max(LENGTHS)), generator=gen)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{FIRST - 1}.hook_resid_post")
    return cache[f"blocks.{FIRST - 1}.hook_resid_post"]


def _close(got, ref):
    scale = ref.abs().amax(-1, keepdim=True)
    torch.testing.assert_close(got / scale, ref / scale, rtol=1e-5, atol=1e-5)


def test_clean_run_equals_transformer_lens(model):
    acts = _acts(model)
    run = LeanResume(model, FIRST).clean(acts)
    ref = _tl(model, acts)
    for row, n in enumerate(LENGTHS):
        _close(run.final[row, :n], ref[row, :n])
    assert len(run.keys) == N_LAYERS - FIRST


def test_edited_windows_equal_full_edited_runs(model):
    """Copies of sentence 0 edited from positions 2, 6 and 11 on (the window of 4 tokens of the
    local layers is narrower than the prefix), windows of 5 positions, the last running past
    the sentence's end: each window equals TL's run of the whole edited sentence there."""
    acts = _acts(model)
    resume = LeanResume(model, FIRST)
    run = resume.clean(acts)
    n, width = LENGTHS[0], 5
    gen = torch.Generator().manual_seed(9)
    starts = [2, 6, 11]
    edited = acts[0].expand(len(starts), -1, -1).clone()
    for c, s in enumerate(starts):
        edited[c, s:] += 3.0 * torch.randn(edited.shape[1] - s, edited.shape[2], generator=gen)
    at = torch.tensor(starts)[:, None] + torch.arange(width)
    rows = edited[torch.arange(len(starts))[:, None], at.clamp(max=edited.shape[1] - 1)]
    with torch.no_grad():
        got = resume.windows(run, torch.zeros(len(starts), dtype=torch.long), rows, at)
    ref = _tl(model, edited)
    for c, s in enumerate(starts):
        real = min(width, n - s)
        assert real > 0
        _close(got[c, :real], ref[c, s:s + real])
        # the edit moves the stream, so the match is not the clean run's
        assert not torch.allclose(ref[c, s:s + real], run.final[0, s:s + real], atol=1e-3)


def test_windows_of_different_sentences_in_one_call(model):
    """Copies of sentence 1 (shorter than the padded batch) and of sentence 0, interleaved in one
    call, with windows of different real widths zero-padded to the widest: each copy's real
    positions equal TL's run of its own whole edited sentence (padding after a window is never
    seen by it, and another sentence's keys never are)."""
    acts = _acts(model)
    resume = LeanResume(model, FIRST)
    run = resume.clean(acts)
    gen = torch.Generator().manual_seed(11)
    copies = [(1, 3, 6), (0, 5, 8), (1, 7, 9), (0, 1, 4)]  # (sentence, start, end)
    width = max(e - s for _, s, e in copies)
    edited = acts[[r for r, _, _ in copies]].clone()
    rows = torch.zeros(len(copies), width, acts.shape[2])
    for c, (_, s, e) in enumerate(copies):
        edited[c, s:] += 3.0 * torch.randn(edited.shape[1] - s, edited.shape[2], generator=gen)
        rows[c, :e - s] = edited[c, s:e]
    at = torch.tensor([s for _, s, _ in copies])[:, None] + torch.arange(width)
    with torch.no_grad():
        got = resume.windows(run, torch.tensor([r for r, _, _ in copies]), rows, at)
    ref = _tl(model, edited)
    for c, (r, s, e) in enumerate(copies):
        assert e <= LENGTHS[r]
        _close(got[c, :e - s], ref[c, s:e])
