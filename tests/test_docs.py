"""The README stays short and points at the docs: at most 200 lines, the two commands
(`make run`, `make test`) as its first two code blocks, and every relative link in README.md and
docs/*.md (markdown links and images) resolving to a file in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# [text](target) and ![alt](target), with an optional "title"; <img src="..."> for HTML images.
MD_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^(```|~~~)")


def _without_code(text: str) -> str:
    """The text with fenced code blocks and inline code removed (links inside are not links)."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            inside = not inside
            continue
        if not inside:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def _code_blocks(text: str) -> list[str]:
    blocks, current = [], None
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _relative_links(path: Path) -> list[str]:
    text = _without_code(path.read_text(encoding="utf-8"))
    targets = MD_LINK.findall(text) + HTML_SRC.findall(text)
    return [t for t in targets
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)  # http(s), mailto, ...
            and not t.startswith("#")]


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 200, f"README.md has {n} lines; move detail into docs/ (at most 200)"


def test_readme_opens_with_the_two_commands():
    blocks = _code_blocks(README.read_text(encoding="utf-8"))
    commands = [[ln.split("#")[0].strip() for ln in b.splitlines() if ln.split("#")[0].strip()]
                for b in blocks[:2]]
    assert commands == [["make run"], ["make test"]], commands


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"methods.md", "benchmarks.md", "results.md", "configuration.md",
            "cluster.md"} <= names, names


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in _relative_links(path):
        file = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (path.parent / file).resolve()
        if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"
