"""polyglot-sae: find bilingual and cross-lingual features in sparse autoencoders."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazily: every pipeline job imports this package, and the API pulls in the pages' renderer.
    if name in ("open_run", "Run", "Feature"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'polyglot_sae' has no attribute {name!r}")
