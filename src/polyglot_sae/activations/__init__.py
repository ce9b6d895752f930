"""Activations: extraction to sparse per-token tables, the per-pair max table, SAE quality."""
