"""Word alignment of a parallel corpus with eflomal (Östling & Tiedemann 2016): a Bayesian
HMM-with-fertility aligner fitted by Gibbs sampling, unsupervised, so it aligns the whole corpus
at once (it learns translations from volume: every pair, not only the scored ones).

Both directions are run (a -> b and b -> a) and symmetrized per pair (``symmetrize``). eflomal
seeds its samplers from ``/dev/urandom`` and has no seed option: two runs give slightly
different links (a few links in a hundred move on the Bible); the link table records the counts
and settings, and downstream results are reproducible from the table, not from the aligner.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from .symmetrize import Link, parse_links, symmetrize


@dataclass(frozen=True)
class AlignConfig:
    """The aligner's settings (config section ``align``); a change reruns the alignment and
    what reads it."""

    # intersect: links both directions agree on (precise, one partner per word; see
    # polyglot_sae.align.symmetrize for why this is the default); grow_diag_final_and: more
    # recall, many-to-one links
    heuristic: Literal["intersect", "grow_diag_final_and"] = "intersect"
    # eflomal's model: 1 IBM-1, 2 HMM, 3 HMM with fertility (its default and its best)
    model: int = 3
    # independent Gibbs samplers averaged (eflomal's Aligner default): more samplers, steadier
    # links, proportionally more time
    n_samplers: int = 3
    # iterations relative to eflomal's default schedule (5000 / sqrt(sentences) per model)
    rel_iterations: float = 1.0
    # Dirichlet prior of aligning a word to NULL (eflomal's default)
    null_prior: float = 0.2

    def __post_init__(self) -> None:
        if self.heuristic not in ("intersect", "grow_diag_final_and"):
            raise InputError("config align", "heuristic", f"unknown {self.heuristic!r}",
                             "use intersect or grow_diag_final_and")
        if self.model not in (1, 2, 3) or self.n_samplers < 1 or self.rel_iterations <= 0:
            raise InputError("config align", "model/n_samplers/rel_iterations",
                             f"{self.model}/{self.n_samplers}/{self.rel_iterations}",
                             "use model 1, 2 or 3, n_samplers >= 1, rel_iterations > 0")


def align_sentences(src: list[list[str]], trg: list[list[str]],
                    config: AlignConfig = AlignConfig()) -> list[list[Link]]:
    """Symmetrized links (source word, target word) of each sentence pair; every sentence must
    have at least one word (the caller skips empty sides). Words are given to the aligner
    lowercased."""
    import eflomal  # compiled extension and binary; only this stage needs it

    if len(src) != len(trg):
        raise ValueError(f"{len(src)} source and {len(trg)} target sentences")
    if not src:
        return []
    aligner = eflomal.Aligner(model=config.model, n_samplers=config.n_samplers,
                              rel_iterations=config.rel_iterations,
                              null_prior=config.null_prior)
    with tempfile.TemporaryDirectory(prefix="eflomal-") as tmp:
        fwd, rev = Path(tmp) / "fwd", Path(tmp) / "rev"
        aligner.align([" ".join(w.lower() for w in s) for s in src],
                      [" ".join(w.lower() for w in s) for s in trg],
                      links_filename_fwd=str(fwd), links_filename_rev=str(rev))
        fwd_lines = fwd.read_text(encoding="utf-8").splitlines()
        rev_lines = rev.read_text(encoding="utf-8").splitlines()
    if len(fwd_lines) != len(src) or len(rev_lines) != len(src):
        raise RuntimeError(f"eflomal wrote {len(fwd_lines)}/{len(rev_lines)} link lines for "
                           f"{len(src)} sentence pairs")
    return [symmetrize(parse_links(f), parse_links(r), config.heuristic)
            for f, r in zip(fwd_lines, rev_lines)]
