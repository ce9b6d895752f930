"""Fetch from the hub, once, into resources/: a model folder, a pretrained SAE in sae-lens' disk
format, a corpus as Parquet. Each pins the configured revision (a branch, tag or commit) to its
commit hash first and downloads at that commit, so what is recorded is what was read; each
writes atomically with its provenance (repo, revision, commit, file hashes).

These run where the hub is reachable (the fetch rules are localrules: the submit node on a
cluster); every other job reads only their outputs and runs offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from polyglot_sae.atomic_io import write_dir, write_json, write_parquet
from polyglot_sae.errors import InputError
from polyglot_sae.hub.releases import PretrainedSAE

PROVENANCE = "fetch.json"  # beside a fetched SAE's sae-lens files
# What a model folder needs (weights, config, tokenizer); not the duplicate formats repos also
# carry (pytorch_model.bin, GGUF, ONNX, Flax), and only top-level files.
MODEL_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".jinja")


def configured_revision(cfg: Mapping[str, Any]) -> str:
    """The revision a config section asks for. The schema gives `revision` no default, so that
    the params of runs made before it existed stay as they were (no refetch); absent (or
    empty) means the repo's default branch."""
    return cfg.get("revision") or "main"


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def hub_errors(repo: str, revision: str, where: str) -> Iterator[None]:
    """Hub failures as InputErrors that name the repo and what to do (HF_TOKEN, the revision)."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    endpoint = _endpoint()
    try:
        yield
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: first
        raise InputError(where, "repo", f"{repo} on {endpoint} is gated: its files need an "
                         "accepted licence and a token",
                         f"accept its terms at {endpoint}/{repo} and export HF_TOKEN (a read token "
                         "of that account) where the fetch rules run") from None
    except RepositoryNotFoundError:
        raise InputError(where, "repo", f"no repo {repo} on {endpoint} (or it is private)",
                         "check the name; for a private repo export HF_TOKEN with access to it") from None
    except RevisionNotFoundError:
        raise InputError(where, "revision", f"{repo} has no revision {revision!r}",
                         "use a branch, tag or commit hash of the repo (or main)") from None
    except LocalEntryNotFoundError as err:  # no connection (or HF_HUB_OFFLINE set)
        raise InputError(where, "repo", f"cannot reach {endpoint} for {repo} ({err})",
                         "run the fetch rules where the hub is reachable (they are localrules: "
                         "Snakemake runs them itself, on the submit node), or set HF_ENDPOINT") from None


def resolve_commit(repo: str, revision: str, repo_type: str = "model") -> tuple[str, list[str]]:
    """(commit hash, files of the repo at that commit) of `revision`."""
    from huggingface_hub import HfApi

    info = HfApi().repo_info(repo, revision=revision, repo_type=repo_type)
    return info.sha, [s.rfilename for s in info.siblings or []]


def _download(repo: str, name: str, commit: str, dest: Path, repo_type: str = "model") -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, name, revision=commit, local_dir=dest, repo_type=repo_type))


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256(path), "size": path.stat().st_size}


def fetch_model(repo: str, revision: str, out_dir: str | Path, spec: dict[str, Any],
                where: str = "config model") -> Path:
    """The model's weights, config and tokenizer at `revision` as an HF folder `out_dir`, with
    `spec` (what load_model reads) and the provenance under its ``hub`` key."""
    from polyglot_sae.model.load import SPEC_FILE

    def write(tmp: Path) -> None:
        with hub_errors(repo, revision, where):
            commit, files = resolve_commit(repo, revision)
            wanted = [f for f in files if "/" not in f and f.endswith(MODEL_SUFFIXES)]
            if not any(f.endswith(".safetensors") for f in wanted):
                raise InputError(where, "repo", f"{repo}@{commit[:12]} has no safetensors weights "
                                 f"at its top level (files: {files[:12]})",
                                 "use a repo with safetensors weights (pickled .bin files are not loaded)")
            records = {f: _file_record(_download(repo, f, commit, tmp)) for f in wanted}
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download metadata
        hub = {"repo": repo, "revision": revision, "commit": commit, "files": records,
               "endpoint": _endpoint()}
        (tmp / SPEC_FILE).write_text(json.dumps({**spec, "hub": hub}, indent=2, default=str))

    return write_dir(write, out_dir)


def _safetensors_shapes(path: str | Path) -> dict[str, list[int]]:
    """Tensor shapes from a local safetensors header (8-byte length, then JSON)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


@contextlib.contextmanager
def _pinned_sae_lens(commit: str, dest: Path) -> Iterator[dict[str, Path]]:
    """Within: sae-lens' loaders download at `commit` into `dest` (not at main into the shared
    cache), and read safetensors headers from those files. Its GemmaScope 2 loader reads them
    by raw HTTP range requests at main otherwise, outside any cache and unpinned; with this, every
    loader of the release table (its own config logic, overrides, formats) runs unchanged on
    pinned files. Yields the files downloaded, by repo path."""
    import sae_lens.loading.pretrained_sae_loaders as loaders

    downloaded: dict[str, Path] = {}

    def pinned(repo_id: str, filename: str, subfolder: str | None = None,
               repo_type: str | None = None, **_ignored: Any) -> str:
        name = f"{subfolder}/{filename}" if subfolder else filename
        downloaded[name] = _download(repo_id, name, commit, dest, repo_type or "model")
        return str(downloaded[name])

    def shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
        return _safetensors_shapes(pinned(repo_id, filename))

    saved = loaders.hf_hub_download, loaders.get_safetensors_tensor_shapes
    loaders.hf_hub_download, loaders.get_safetensors_tensor_shapes = pinned, shapes
    try:
        yield downloaded
    finally:
        loaders.hf_hub_download, loaders.get_safetensors_tensor_shapes = saved


def fetch_sae(entry: PretrainedSAE, revision: str, hook: str, out_dir: str | Path,
              d_model: int | None = None, where: str = "config saes[]") -> Path:
    """The release table's SAE at `revision` of its repo, loaded by sae-lens' own loader and
    saved in sae-lens' disk format with its provenance (fetch.json). Refused when it does not
    read `hook` or vectors of width `d_model` (the model's, when known)."""
    from sae_lens import SAE

    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out_dir).parent, prefix=".download.") as dl:
        with hub_errors(entry.repo_id, revision, where):
            commit, _ = resolve_commit(entry.repo_id, revision)
            with _pinned_sae_lens(commit, Path(dl)) as downloaded:
                sae = SAE.from_pretrained(entry.release, entry.sae_id, device="cpu")
        records = {name: _file_record(path) for name, path in sorted(downloaded.items())}
    check_fetched_sae(sae, hook, d_model, where)
    provenance = {"release": entry.release, "sae_id": entry.sae_id, "repo": entry.repo_id,
                  "path": entry.path, "revision": revision, "commit": commit, "files": records,
                  "neuronpedia": entry.neuronpedia, "endpoint": _endpoint()}

    def write(tmp: Path) -> None:
        sae.save_model(tmp)
        write_json(provenance, tmp / PROVENANCE)

    return write_dir(write, out_dir)


def check_fetched_sae(sae, hook: str, d_model: int | None, where: str) -> None:
    """A pretrained SAE read at another hook, or on vectors of another width, than the config
    says would be scored on the wrong activations: refused here, before any extraction."""
    trained_at = getattr(sae.cfg.metadata, "hook_name", None)
    if trained_at and trained_at != hook:
        raise InputError(where, "hook", f"the SAE was trained at {trained_at}, the config reads "
                         f"it at {hook}", f"set hook: {trained_at} (or choose an SAE of {hook})")
    if d_model is not None and sae.cfg.d_in != d_model:
        raise InputError(where, "d_in", f"the SAE reads vectors of width {sae.cfg.d_in} but the "
                         f"model's residual stream has width {d_model}",
                         "use an SAE of this model (the release table's model field)")


def model_width(model_dir: str | Path) -> int | None:
    """The model's residual width from its HF config.json (None when it has none, e.g. tiny)."""
    path = Path(model_dir) / "config.json"
    if not path.exists():
        return None
    cfg = json.loads(path.read_text())
    cfg = cfg.get("text_config", cfg)
    return cfg.get("hidden_size") or cfg.get("d_model")


def fetch_corpus(name: str, config: str | None, split: str, revision: str, out_path: str | Path,
                 where: str = "config corpus.opus") -> Path:
    """A hub dataset's split at `revision`, through `datasets`, written as one Parquet file with
    its provenance (the corpus rule then reads only that file)."""
    import datasets

    with hub_errors(name, revision, where):
        commit, _ = resolve_commit(name, revision, "dataset")
        ds = datasets.load_dataset(name, config, split=split, revision=commit)
    table = ds.with_format("arrow")[:]
    provenance = {"repo": name, "config": config, "split": split, "revision": revision,
                  "commit": commit, "rows": ds.num_rows, "endpoint": _endpoint(),
                  "datasets": datasets.__version__}
    return write_parquet(table, out_path, provenance)
