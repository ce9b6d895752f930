"""Writes that never leave a partial file or folder under a finished one's name: everything is
written to a temporary name beside the target and renamed into place."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    # A writer killed mid-write (SIGKILL, OOM, preemption) leaves its temp file behind; the next
    # writer of the same target removes it (one job writes a target at a time).
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
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
    arrow = arrow.replace_schema_metadata(_with_provenance(arrow.schema, metadata))
    with atomic_file(path) as tmp:
        pq.write_table(arrow, tmp, row_group_size=row_group_size,
                       **_encodings(arrow.column_names, byte_stream_split))
    return Path(path)


def write_parquet_parts(
    parts: Iterable[pl.DataFrame],
    path: str | Path,
    schema: Mapping[str, pl.DataType],
    metadata: Mapping[str, Any] | None = None,
    *,
    row_group_size: int = 512 * 1024,
    byte_stream_split: list[str] | None = None,
) -> int:
    """Write a table arriving in parts (each cast to `schema`) as one Parquet file, atomically,
    holding one part in memory at a time; the rows written."""
    arrow_schema = pl.DataFrame(schema=dict(schema)).to_arrow().schema
    arrow_schema = arrow_schema.with_metadata(_with_provenance(arrow_schema, metadata))
    rows = 0
    with atomic_file(path) as tmp:
        with pq.ParquetWriter(tmp, arrow_schema,
                              **_encodings(arrow_schema.names, byte_stream_split)) as writer:
            for part in parts:
                writer.write_table(part.cast(dict(schema)).to_arrow().cast(arrow_schema),
                                   row_group_size=row_group_size)
                rows += part.height
    return rows


def _with_provenance(schema: pa.Schema, metadata: Mapping[str, Any] | None) -> dict:
    merged = dict(schema.metadata or {})
    if metadata is not None:
        merged[META_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
    return merged


def _encodings(columns: list[str], byte_stream_split: list[str] | None) -> dict[str, Any]:
    """zstd; byte-stream-split for float columns that compress badly otherwise, dictionaries
    for the rest."""
    return {"compression": "zstd", "use_byte_stream_split": byte_stream_split or False,
            "use_dictionary": [c for c in columns if c not in (byte_stream_split or [])]}


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
