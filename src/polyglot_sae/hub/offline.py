"""Jobs other than the fetch rules run offline (HF_HUB_OFFLINE=1, set by workflow/rules/hub.smk):
one that still reaches for the hub gets an error naming itself and the fetch stage to run."""

from __future__ import annotations

import traceback

from polyglot_sae.errors import InputError
from polyglot_sae.hub import FETCH_RULES

# What huggingface_hub and datasets raise when offline mode stops a request, or when a file is
# neither in the cache nor reachable.
_OFFLINE_ERRORS = ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectionError",
                   "DatasetNotFoundError")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def offline_error(rule: str, exc: BaseException) -> InputError | None:
    """The error to raise instead of `exc` when it is the hub refused to an offline job."""
    if rule in FETCH_RULES or isinstance(exc, InputError):
        return None
    hits = [e for e in _chain(exc) if type(e).__name__ in _OFFLINE_ERRORS
            and type(e).__module__.split(".")[0] in ("huggingface_hub", "datasets", "requests")]
    if not hits:
        return None
    modules = {f.filename for e in _chain(exc) for f in traceback.extract_tb(e.__traceback__)}
    # which fetch stage would have brought the file: the code that asked for it tells
    if any("/datasets/" in m for m in modules):
        stage = "fetch_corpus"
    elif any("/sae_lens/" in m for m in modules):
        stage = "fetch_sae"
    else:
        stage = "fetch_model"
    return InputError(f"rule {rule}", "hub", f"it reached for the hub ({type(hits[0]).__name__}: "
                      f"{str(hits[0])[:200]}), but only the fetch rules may: every other job runs "
                      "offline (HF_HUB_OFFLINE=1)",
                      f"run the fetch stage {stage} first where the hub is reachable (snakemake "
                      f"--until {' '.join(FETCH_RULES)}), or give the source a local path")
