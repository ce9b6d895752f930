"""polyglot-sae: find bilingual and cross-lingual features in sparse autoencoders."""

__version__ = "0.1.0"
