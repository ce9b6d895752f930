"""Read verse-aligned Bibles from SWORD zText modules (Debian's sword-text-* packages).

pysword supplies the versification tables; the blocks are decompressed here, once each,
because pysword decompresses per verse (~1 min per Bible against ~1 s here).
"""

from __future__ import annotations

import configparser
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

from pysword.canons import canons

from polyglot_sae.errors import InputError


@dataclass(frozen=True)
class SwordModule:
    name: str
    data_dir: Path
    versification: str
    encoding: str


def find_module(sword_dir: str | Path, name: str) -> SwordModule:
    sword_dir = Path(sword_dir)
    conf_dir = sword_dir / "mods.d"
    confs = list(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []
    for conf in confs:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(conf.read_text(encoding="utf-8", errors="replace"))
        if name not in parser:
            continue
        section = parser[name]
        if section.get("ModDrv", "").lower() != "ztext":
            raise InputError(conf, "ModDrv", f"module {name} is {section.get('ModDrv')}, not zText",
                             "use a zText module (Debian's sword-text-* packages are)")
        return SwordModule(
            name=name,
            data_dir=sword_dir / section["DataPath"].lstrip("./"),
            versification=section.get("Versification", "KJV").lower(),
            encoding=section.get("Encoding", "UTF-8"),
        )
    available = sorted(c.stem for c in confs)
    raise InputError(conf_dir, "corpus.sword.modules", f"no SWORD module named {name!r} "
                     f"(installed: {available})", "install it, e.g. `apt-get install sword-text-kjv`")


def _read_testament(data_dir: Path, testament: str) -> list[str]:
    """All entries (headings included) of one testament, in index order."""
    idx = (data_dir / f"{testament}.bzs").read_bytes()
    verses = (data_dir / f"{testament}.bzv").read_bytes()
    blob = (data_dir / f"{testament}.bzz").read_bytes()
    blocks = []
    for offset, size, _ in struct.iter_unpack("<III", idx):
        blocks.append(zlib.decompress(blob[offset : offset + size]))
    out = []
    for block_num, start, size in struct.iter_unpack("<IIH", verses):
        raw = blocks[block_num][start : start + size] if size else b""
        out.append(raw)
    return [r.decode("utf-8") for r in out] if out else []


def iter_verses(module: SwordModule) -> Iterator[tuple[str, str]]:
    """(osis ref like 'Gen.1.1', raw OSIS text) for every verse of the module's versification."""
    canon = canons[module.versification]
    for testament in ("ot", "nt"):
        if not (module.data_dir / f"{testament}.bzs").exists():
            continue
        entries = _read_testament(module.data_dir, testament)
        book_offset = 2  # index 0: empty, 1: testament heading
        for _name, osis, _abbr, chapter_lengths in canon[testament]:
            index = book_offset + 1  # after the book heading
            for chapter, n_verses in enumerate(chapter_lengths, start=1):
                index += 1  # chapter heading
                for verse in range(1, n_verses + 1):
                    text = entries[index] if index < len(entries) else ""
                    yield f"{osis}.{chapter}.{verse}", text
                    index += 1
            book_offset = index


_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_osis(text: str) -> str:
    """Plain verse text: footnotes dropped, markup removed, whitespace collapsed."""
    text = _NOTE.sub(" ", text)
    text = _TAG.sub("", text)
    text = unescape(text).replace("¶", " ")
    return _SPACE.sub(" ", text).strip()
