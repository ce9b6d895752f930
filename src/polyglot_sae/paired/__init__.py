"""The paired method: correlation of per-pair maxima across languages, its bound, controls and classes."""
