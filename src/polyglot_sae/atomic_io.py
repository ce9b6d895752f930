"""Writes that never leave a partial file or folder under a finished one's name: everything is
written to a temporary name beside the target and renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"polyglot_sae"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_target(path: str | Path) -> tuple[Path, Path]:
    """A temp path beside `path` (same filesystem, so the final rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return path, Path(tmp)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on failure it is removed."""
    path, tmp = atomic_target(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file or folder into place, with the usual permissions
    (mkstemp/mkdtemp make them private)."""
    os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_UMASK)
    os.replace(tmp, path)


def write_parquet(
    table: pl.DataFrame | pa.Table,
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    *,
    row_group_size: int = 512 * 1024,
    byte_stream_split: list[str] | None = None,
) -> Path:
    """Write zstd Parquet with provenance in the schema metadata, atomically."""
    arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
    if metadata is not None:
        merged = dict(arrow.schema.metadata or {})
        merged[META_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
        arrow = arrow.replace_schema_metadata(merged)
    with atomic_file(path) as tmp:
        pq.write_table(
            arrow,
            tmp,
            compression="zstd",
            row_group_size=row_group_size,
            use_byte_stream_split=byte_stream_split or False,
            use_dictionary=[c for c in arrow.column_names if c not in (byte_stream_split or [])],
        )
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The provenance dict written by `write_parquet` ({} when absent)."""
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def write_text(text: str, path: str | Path) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    return write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def write_dir(write: Callable[[Path], Any], out_dir: str | Path) -> Path:
    """Fill a temporary folder with `write(folder)`, then swap it in for `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
