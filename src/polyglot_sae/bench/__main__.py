"""Run one benchmark: ``python -m polyglot_sae.bench NAME [ARGS]``; without NAME, list them.

Each benchmark is also a module (``python -m polyglot_sae.bench.extract_bench``) whose
``main(argv)`` takes the arguments; ``NAME --help`` shows them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

BENCHMARKS = {
    "extract": "extract_bench",
    "hooks": "hooks_bench",
    "gpu_extract": "gpu_extract_bench",
    "null": "null_bench",
    "paired": "paired_bench",
    "logit_lens": "logit_lens_bench",
    "storage": "storage_bench",
    "reduce": "reduce_bench",
    "scaling": "scaling_bench",
    "causal": "causal_bench",
    "words": "words_bench",
    "explorer": "explorer_bench",
    "width": "width_bench",
}


def _summary(module: str) -> str:
    """The docstring's first paragraph, read from the source: listing must not import torch."""
    spec = importlib.util.find_spec(f"{__package__}.{module}")
    if spec is None or spec.origin is None:
        return "(not installed)"
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.splitlines()[0])
        for name, module in BENCHMARKS.items():
            print(f"  {name:<12} {_summary(module)}")
        return 0
    name, *rest = argv
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__}.{BENCHMARKS[name]}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
