"""A local stand-in for the Hugging Face Hub: serves folders over the HTTP endpoints that
huggingface_hub (hence transformers, datasets and sae-lens) call, so that the hub code paths run
for real on a machine without a network (HF_ENDPOINT points at it).

Layout of the served root: ``{models,datasets}/{org}/{name}/<files>``. Each repo has one commit,
whose hash is derived from its files (so it changes when they do); it answers to ``main`` and to
that hash. What is served, read from huggingface_hub 2.x:

- ``GET /api/{models,datasets}/{repo}[/revision/{rev}]``: repo info with ``sha`` and ``siblings``;
- ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` and ``POST .../paths-info/{rev}`` (HfFileSystem,
  which `datasets` uses to list data files);
- ``HEAD/GET /{repo}`` or ``/datasets/{repo}`` + ``/resolve/{rev}/{path}``: ``X-Repo-Commit``,
  ``ETag`` and ``Content-Length``; large (LFS-like) files answer 302 with ``X-Linked-Etag``,
  ``X-Linked-Size`` and a ``Location`` on another host name of this server (the hub's CDN), which
  huggingface_hub reads the metadata from and downloads; ``Range`` requests (sae-lens reads
  safetensors headers that way);
- unknown repos 404 with ``X-Error-Code: RepoNotFound``, gated ones 401 ``GatedRepo``, unknown
  revisions ``RevisionNotFound``, unknown files ``EntryNotFound``.

Every request is recorded (``requests``), so tests can assert that a run fetched nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN_BYTES = 1 << 20  # files above this are served like the hub's LFS/CDN files
_CHUNK = 1 << 20


@dataclass
class _File:
    path: Path
    size: int
    sha256: str  # the LFS oid, which the hub also sends as ETag
    git_oid: str  # the git blob id of a small file


@dataclass
class _Repo:
    files: dict[str, _File]
    commit: str


@dataclass
class HubStandIn:
    """The server's state: the served root, gated repos, and the requests it answered."""

    root: Path
    gated: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _repos: dict[tuple[str, str], _Repo] = field(default_factory=dict)
    _hashes: dict[tuple[str, int, int], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo(self, kind: str, repo_id: str) -> _Repo | None:
        folder = self.root / kind / repo_id
        if not folder.is_dir():
            return None
        with self._lock:  # hashed once per file version (the model is 1 GB)
            files = {}
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    st = p.stat()
                    key = (str(p), st.st_size, st.st_mtime_ns)
                    if key not in self._hashes:
                        self._hashes[key] = _sha256(p)
                    sha = self._hashes[key]
                    rel = p.relative_to(folder).as_posix()
                    files[rel] = _File(p, st.st_size, sha, hashlib.sha1(f"{rel}{sha}".encode()).hexdigest())
            commit = hashlib.sha1("".join(f"{k}{f.sha256}" for k, f in files.items()).encode()).hexdigest()
            return _Repo(files, commit)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CDN = re.compile(r"^/cdn/(models|datasets)/([^/]+/[^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn

    def log_message(self, *args) -> None:  # quiet: the test reads `requests` instead
        pass

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    # -- routing ---------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((method, path))
        if m := _API.match(path):
            kind, repo_id, what, rev, sub = m.groups()
            return self._api(method, kind, repo_id, what or "revision", rev or "main", (sub or "").lstrip("/"))
        if m := _RESOLVE.match(path):
            kind = "datasets" if m.group(1) else "models"
            return self._resolve(method, kind, m.group(2), m.group(3), m.group(4))
        if m := _CDN.match(path):
            repo = self.hub.repo(m.group(1), m.group(2))
            if repo and m.group(3) in repo.files:
                return self._send_file(method, repo, repo.files[m.group(3)])
        self._error(404, "EntryNotFound")

    def _lookup(self, kind: str, repo_id: str, rev: str) -> _Repo | None:
        if repo_id in self.hub.gated:
            self._error(401, "GatedRepo")
            return None
        repo = self.hub.repo(kind, repo_id)
        if repo is None:
            self._error(404, "RepoNotFound")
            return None
        if unquote(rev) not in ("main", repo.commit):
            self._error(404, "RevisionNotFound")
            return None
        return repo

    def _api(self, method: str, kind: str, repo_id: str, what: str, rev: str, sub: str) -> None:
        repo = self._lookup(kind, repo_id, rev)
        if repo is None:
            return
        if what == "revision":
            body = {"id": repo_id, "sha": repo.commit, "private": False, "gated": False,
                    "siblings": [{"rfilename": name} for name in repo.files]}
        elif what == "tree":
            recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0] == "true"
            body = _tree(repo, sub, recursive)
        else:  # paths-info: form field `paths`, repeated
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            wanted = [p.strip("/") for p in form.get("paths", [])]
            entries = {e["path"]: e for e in _tree(repo, "", True)}
            body = [entries[p] for p in wanted if p in entries]
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", repo.commit)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _resolve(self, method: str, kind: str, repo_id: str, rev: str, name: str) -> None:
        repo = self._lookup(kind, repo_id, rev)
        if repo is None:
            return
        file = repo.files.get(name)
        if file is None:
            self._error(404, "EntryNotFound", repo.commit)
            return
        if file.size >= LFS_MIN_BYTES:
            # The hub sends large files from a CDN on another host: metadata on the redirect.
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.hub.port}/cdn/{kind}/{repo_id}/{name}")
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("X-Linked-Etag", f'"{file.sha256}"')
            self.send_header("X-Linked-Size", str(file.size))
            self.send_header("ETag", f'"{file.git_oid}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(method, repo, file, etag=file.git_oid)

    def _send_file(self, method: str, repo: _Repo, file: _File, etag: str | None = None) -> None:
        start, end = 0, file.size - 1
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "") or "")
        if ranged:
            start = int(ranged.group(1))
            end = min(int(ranged.group(2)) if ranged.group(2) else end, end)
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", f'"{etag or file.sha256}"')
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{file.size}")
        self.end_headers()
        if method == "HEAD":
            return
        with file.path.open("rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0 and (chunk := fh.read(min(_CHUNK, left))):
                self.wfile.write(chunk)
                left -= len(chunk)

    def _error(self, status: int, code: str, commit: str | None = None) -> None:
        data = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _tree(repo: _Repo, sub: str, recursive: bool) -> list[dict]:
    """The entries under `sub` (files and folders), as /api/.../tree answers."""
    prefix = f"{sub}/" if sub else ""
    entries: dict[str, dict] = {}
    for name, f in repo.files.items():
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(folder, {"type": "directory", "path": folder,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
        if recursive or len(parts) == 1:
            entry = {"type": "file", "path": name, "size": f.size, "oid": f.git_oid}
            if f.size >= LFS_MIN_BYTES:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries[name] = entry
    return sorted(entries.values(), key=lambda e: e["path"])


def start(root: Path, gated: set[str] | None = None) -> tuple[HubStandIn, ThreadingHTTPServer]:
    """Serve `root` on a free port of 127.0.0.1 (and localhost, the "CDN"); stop with
    ``server.shutdown()``."""
    hub = HubStandIn(Path(root), set(gated or ()))
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hub, server
