"""Where tensors go: one rule for every stage that may use a GPU."""

from __future__ import annotations

import sys

import torch


def resolve_device(device: str) -> str:
    """``auto``: cuda when available, else cpu; a cuda device asked for without CUDA falls back
    to cpu with a warning (a GPU rule run on a CPU node still finishes)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"warning: device {device} requested but CUDA is absent; using cpu", file=sys.stderr)
        return "cpu"
    return device
