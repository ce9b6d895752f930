"""Smoke tests of the benchmark scripts at tiny sizes: each runs end to end and prints its
figures (the figures themselves are measured by hand, on quiet machines; docs/benchmarks.md).
The extract and logit-lens benches need the real Gemma-3-270M folder and are left to it."""

import subprocess
import sys

import pytest

BENCH = [sys.executable, "-m", "polyglot_sae.bench"]


def _run(*args: str) -> str:
    out = subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_listing_names_every_bench_without_importing_torch():
    code = ("import sys; from polyglot_sae.bench.__main__ import main; main([]); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("extract", "hooks", "causal", "gpu_extract", "null", "paired", "logit_lens", "storage", "reduce",
                 "scaling", "words", "explorer", "width"):
        assert f"  {name} " in out.stdout
    assert out.stdout.strip().endswith("False")


@pytest.mark.parametrize("args, expect", [
    (("null", "--pairs", "300", "--features", "64", "--permutations", "19",
      "--mean-active", "10"), "features bilingual at q < 0.05"),
    (("storage", "--pairs", "50", "--d-sae", "256", "--l0", "8"), "smaller"),
    (("reduce", "--scales", "0.01", "--shard-pairs", "100", "--d-sae", "256"), "peak RSS"),
    (("scaling", "--pairs", "200", "--d-sae", "256", "--shard-pairs", "100",
      "--permutations", "9", "--d-model", "32", "--encoder-d-sae", "512"), "us/token"),
    (("gpu_extract", "--device", "cpu", "--dtype", "float32", "--layers", "2", "--d-vocab",
      "512", "--d-model", "128", "--d-mlp", "256", "--hook-layer", "1", "--d-sae", "64",
      "--pairs", "2", "--batch-tokens", "128",
      "--forward", "lean"),
     "engine (forward, SAE, sparse rows written)"),
    (("hooks", "--layers", "4", "--d-model", "64", "--hooks", "3", "--pairs", "10", "--d-sae",
      "128"), "tables bit-identical"),
    (("causal", "--tiny", "--threads", "1"), "Causal check: paired top 5"),
    (("words", "--pairs", "300", "--features", "64", "--l0", "4", "--shard-pairs", "100",
      "--bootstrap", "20", "--skip-align"), "word-level statistics"),
    (("explorer", "--features", "300"), "errors: none"),
    # three stages: each runs in a child process of its own (a few seconds of imports each),
    # and every stage's function has its own tests
    (("width", "--d-sae", "256", "--pairs", "40", "--bootstrap", "20",
      "--stages", "reduce", "words", "mcs", "--mcs-rows", "64"), "mcs | 256 | 40 |"),
], ids=["null", "storage", "reduce", "scaling", "gpu_extract", "hooks", "causal", "words",
        "explorer", "width"])
def test_bench_runs_at_tiny_size(args, expect):
    assert expect in _run(*args)
