"""One forward pass for many SAEs, inside jobs that stay one per SAE.

Snakemake keeps one extraction job per (SAE, shard) and one training-cache job per hook, so a
config change reruns exactly the SAEs it touches and adding a hook plans only the new hook's
jobs. The passes are shared at run time instead: the first job of a shard to run takes a lock,
runs the model once to the deepest hook, and writes its own table plus the tables of every
other SAE of the run whose table is missing or stale to a side folder (`.shared_pass/`), each
stamped with a key of everything it was computed from; the sibling jobs, when Snakemake runs
them, wait on the lock, find their table under a matching key and move it into place (an
atomic rename) without running the model. The tables are those of a pass for each SAE alone,
bit for bit (`extract.write_sparse_tables`), so where a table comes from changes nothing.

A sibling that cannot be computed (its SAE not built yet, a hook the model lacks, a width that
does not fit) is skipped: its own job computes it, or reports the error, alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl

from polyglot_sae.atomic_io import read_metadata

KEY_FIELD = "pass_key"
SHARED_DIR = ".shared_pass"


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_digest(folder: str | Path, *, contents: bool) -> str:
    """A digest of a folder's files: their bytes (`contents`), or names and sizes only (for a
    model's weights: a re-prepared model of other weights has another spec or size)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        digest.update(str(path.relative_to(folder)).encode())
        if contents:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()


def table_digest(table: pl.DataFrame) -> str:
    return hashlib.sha256(table.write_csv().encode()).hexdigest()


def pass_key(**parts: Any) -> str:
    """The key a shared table is stamped with: a digest of what it was computed from (and of
    this package's version, whose code computed it)."""
    blob = json.dumps({**parts, "code": version("polyglot-sae")}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Sibling:
    """One SAE of the run as the shared pass sees it: where its table belongs, and its key."""

    sae_id: str
    hook: str
    sae_dir: str  # "" for a training cache (no SAE yet)
    final: Mapping[str, Path]  # kind (acts, tokens) -> the path its own job writes
    key: str

    def cached(self, shared: Path) -> dict[str, Path]:
        return {kind: shared / self.sae_id / f"{path.stem}.{kind}{path.suffix}"
                for kind, path in self.final.items()}


def _stamped(path: Path, key: str) -> bool:
    """Whether `path` (Parquet or safetensors) exists and carries `key`."""
    if not path.exists():
        return False
    with contextlib.suppress(Exception):  # unreadable: not ours, recompute
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return (f.metadata() or {}).get(KEY_FIELD) == key
        return read_metadata(path).get(KEY_FIELD) == key
    return False


def adopt(own: Sibling, shared: Path) -> bool:
    """Move tables another job computed for `own` into place when their key matches."""
    cached = own.cached(shared)
    if not all(_stamped(path, own.key) for path in cached.values()):
        return False
    for kind, path in cached.items():
        own.final[kind].parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, own.final[kind])
    return True


def wanted(siblings: Sequence[Sibling], own: Sibling, shared: Path) -> list[Sibling]:
    """The others whose tables are neither in place nor already shared under their key, and
    whose SAE is built."""
    out = []
    for s in siblings:
        if s.sae_id == own.sae_id or (s.sae_dir and not Path(s.sae_dir).exists()):
            continue
        if all(_stamped(p, s.key) for p in s.final.values()):
            continue
        if all(_stamped(p, s.key) for p in s.cached(shared).values()):
            continue
        out.append(s)
    return out
