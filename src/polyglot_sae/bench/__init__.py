"""Benchmarks run as scripts (``python -m polyglot_sae.bench.<name>``), not tests."""
