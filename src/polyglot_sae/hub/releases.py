"""sae-lens' table of pretrained SAE releases, read without importing sae-lens (and torch): the
Snakefile resolves `pretrained` SAEs while it plans, so a misspelt id fails before any job runs.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import yaml

from polyglot_sae.errors import InputError

NEURONPEDIA = "https://www.neuronpedia.org/{id}/{{feature}}"


@dataclass(frozen=True)
class PretrainedSAE:
    """One entry of the release table."""

    release: str
    sae_id: str
    repo_id: str  # the hub repo holding it
    path: str  # its folder (or file) in the repo
    neuronpedia: str | None  # Neuronpedia's id of the SAE, e.g. gemma-3-270m/12-gemmascope-2-res-16k

    @property
    def neuronpedia_url(self) -> str | None:
        """Link template of a feature's Neuronpedia page (report.page_data's neuronpedia_url)."""
        return NEURONPEDIA.format(id=self.neuronpedia) if self.neuronpedia else None


@functools.cache
def release_table() -> dict:
    """The installed sae-lens' pretrained_saes.yaml (about a second to parse)."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("sae_lens", "pretrained_saes.yaml", "sae-lens is not installed",
                         "install the project's environment (pip install -e .)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained_saes.yaml"
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _nearest(word: str, choices: list[str], n: int = 5) -> list[str]:
    near = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    return near or sorted(choices)[:n]


def resolve(release: str, sae_id: str, where: str = "config saes[]") -> PretrainedSAE:
    """The table's entry for (release, sae_id); an unknown one is refused with the nearest ids."""
    table = release_table()
    if release not in table:
        raise InputError(where, "release", f"sae-lens has no release {release!r} (nearest: "
                         f"{_nearest(release, list(table))})",
                         "use a release of sae-lens' pretrained_saes.yaml, e.g. gemma-scope-2-270m-pt-res")
    entry = table[release]
    saes = {s["id"]: s for s in entry["saes"]}
    if sae_id not in saes:
        raise InputError(where, "sae_id", f"release {release} has no SAE {sae_id!r} (nearest: "
                         f"{_nearest(sae_id, list(saes))}; {len(saes)} in all)",
                         "use an id of that release in sae-lens' pretrained_saes.yaml")
    sae = saes[sae_id]
    return PretrainedSAE(release=release, sae_id=sae_id, repo_id=entry["repo_id"],
                         path=str(sae["path"]), neuronpedia=sae.get("neuronpedia"))
