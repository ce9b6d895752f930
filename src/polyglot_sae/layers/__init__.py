"""The hook-point sweep: the layer profile (workflow/rules/layers.smk)."""
