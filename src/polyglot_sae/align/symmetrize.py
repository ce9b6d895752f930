"""Two directional alignments of a sentence pair -> one set of links.

``intersect``: the links both directions found. Each word gets at most one partner and the
links are the aligner's most confident ones; this is the default because the word-level
statistics read every link as "these two words translate each other": a wrong link puts a
non-translation in the sample (it biases r_word and align_lift toward 0), a missing link only
makes the sample smaller.

``grow_diag_final_and`` (Koehn et al. 2003, the Moses default for phrase extraction): the
intersection, grown by neighbouring links (diagonals included) of the union that attach a word
not yet aligned, then union links whose two words are both still unaligned. More recall
(many-to-one links for multi-word translations) at some precision.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Link = tuple[int, int]
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def parse_links(line: str) -> set[Link]:
    """``'0-0 1-2'`` (eflomal's i-j per line) -> {(0, 0), (1, 2)}."""
    out = set()
    for item in line.split():
        i, _, j = item.partition("-")
        out.add((int(i), int(j)))
    return out


def symmetrize(fwd: Iterable[Link], rev: Iterable[Link],
               heuristic: Literal["intersect", "grow_diag_final_and"] = "intersect",
               ) -> list[Link]:
    """The sorted links of one sentence pair; ``fwd`` and ``rev`` both as (source, target)."""
    fwd, rev = set(fwd), set(rev)
    if heuristic == "intersect":
        return sorted(fwd & rev)
    if heuristic != "grow_diag_final_and":
        raise ValueError(f"unknown heuristic {heuristic!r}")
    union = fwd | rev
    links = fwd & rev
    src = {i for i, _ in links}
    trg = {j for _, j in links}
    grew = True
    while grew:
        grew = False
        for i, j in sorted(links):
            for di, dj in _NEIGHBOURS:
                cand = (i + di, j + dj)
                if cand in union and cand not in links and (
                        cand[0] not in src or cand[1] not in trg):
                    links.add(cand)
                    src.add(cand[0])
                    trg.add(cand[1])
                    grew = True
    for direction in (fwd, rev):  # final-and: both words still unaligned
        for i, j in sorted(direction):
            if i not in src and j not in trg:
                links.add((i, j))
                src.add(i)
                trg.add(j)
    return sorted(links)
