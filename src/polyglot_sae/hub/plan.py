"""What the Snakefile asks of the hub stage while it plans (workflow/rules/hub.smk)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from polyglot_sae.hub.releases import PretrainedSAE, resolve


def pretrained_saes(saes: Mapping[str, Mapping[str, Any]]) -> dict[str, PretrainedSAE]:
    """The config's `pretrained` SAEs (by id), resolved in sae-lens' release table: a misspelt
    release or id fails the plan, before any job runs."""
    out = {}
    for sae, entry in saes.items():
        if entry["source"] != "pretrained":
            continue
        missing = [k for k in ("release", "sae_id") if not entry.get(k)]
        if missing:
            from polyglot_sae.errors import InputError

            raise InputError(f"config saes[{sae}]", missing[0], "a pretrained SAE needs a release "
                             "and an SAE id", "set release and sae_id from sae-lens' release table")
        out[sae] = resolve(entry["release"], entry["sae_id"], f"config saes[{sae}]")
    return out


def exactly(names: Iterable[str]) -> str:
    """A wildcard constraint matching exactly `names` (none: a pattern that never matches)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def page_settings(pages: Mapping[str, Any], entry: PretrainedSAE | None) -> Mapping[str, Any]:
    """The feature pages' settings of one SAE: a pretrained SAE links its features to Neuronpedia
    when the release table names its Neuronpedia id (pages.neuronpedia_url, when set, wins).
    Unchanged otherwise, so other SAEs' page params stay as they were."""
    if pages.get("neuronpedia_url") or entry is None or not entry.neuronpedia:
        return pages
    return {**pages, "neuronpedia_url": entry.neuronpedia_url}
