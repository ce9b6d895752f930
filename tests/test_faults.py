"""Cluster faults, locally through Snakemake: an extraction job SIGKILLed in the middle of writing
its Parquet, a retried job, a rerun after a failure, a corpus that grows.

The workflow here is the cluster's shape: a pretrained (disk) SAE, every pair scored, fixed-size
shards. The SAE fires on about half its 768 latents, so one shard's table is ~10^6 rows and its
write takes long enough to be caught in the middle.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import (ROOT, SNAKEMAKE, make_jumprelu, run_snakemake, sample_corpus,
                      script_pids, write_config)
from test_workflow import planned_jobs

pytestmark = pytest.mark.integration

N_PAIRS, GROWN_PAIRS, SHARD_PAIRS = 160, 220, 50
TABLES = ("maxacts/cl-sae.parquet", "scores/cl-sae.exact.parquet")
TARGETS = [f"results/cl/{t}" for t in TABLES]


def cluster_config(workdir: Path, n_pairs: int = N_PAIRS, shard_pairs: int = SHARD_PAIRS) -> dict:
    # Paths relative to the workdir, so that a copied run's parameters are the original's.
    files = {}
    for lang, lines in sample_corpus(n_pairs).items():
        files[lang] = f"corpus.{lang}.txt"
        (workdir / files[lang]).write_text("\n".join(lines) + "\n")
    if not (workdir / "sae").exists():
        sae = make_jumprelu(32, 768)
        sae.threshold.data.fill_(0.0)
        sae.save_model(workdir / "sae")
    return {
        "run": "cl",
        "corpus": {"name": "toy", "source": "files", "langs": ["en", "es"], "files": files},
        "split": {"seed": 0, "train_pairs": 0, "score_pairs": None, "shard_pairs": shard_pairs},
        "model": {"name": "tiny", "source": "tiny", "tiny": {"seed": 1}},
        "extract": {"batch_size": 8, "max_tokens": 96},
        "saes": [{"id": "cl-sae", "hook": "blocks.1.hook_resid_post", "source": "disk",
                  "path": "sae"}],
        "score": {"methods": ["exact"], "beta_rank": 5, "permutations": 19},
    }


def tables(workdir: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(workdir / "results" / "cl" / t) for t in TABLES}


def acts_dir(workdir: Path) -> Path:
    return workdir / "results" / "cl" / "acts" / "cl-sae"


def kill_extraction_mid_write(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run Snakemake; when an extraction job's activation table is half-written (its temp file
    exists), SIGKILL the job. Returns the finished run and the shard it killed, after checking
    that the kill came mid-write and no partial table is visible under a final name."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args, *TARGETS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 900
    try:
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            temps = list(acts_dir(workdir).glob(".*.parquet.*.tmp")) if acts_dir(workdir).exists() else []
            if temps:
                pids = script_pids(workdir, ".extract.py")
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                if pids:
                    shard = temps[0].name.split(".")[1]
                    assert temps[0].exists(), "the write finished before the kill"
                    killed = shard
                    final = acts_dir(workdir) / f"{shard}.parquet"
                    assert not final.exists(), "a table appeared under its final name mid-write"
            time.sleep(0.002)
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no extraction job was caught mid-write"
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), killed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    workdir = tmp_path_factory.mktemp("reference")
    write_config(workdir, cluster_config(workdir))
    run_snakemake(workdir, "--cores", "2", *TARGETS, timeout=1200)
    return workdir


def copy_run(reference: Path, workdir: Path) -> None:
    """The finished run, Snakemake's records and timestamps included."""
    for path in reference.iterdir():
        subprocess.run(["cp", "-a", str(path), str(workdir)], check=True)


def without_shards(reference: Path, workdir: Path, shards: tuple[str, ...]) -> None:
    """The finished run less the activation tables of `shards` and the tables built on them:
    only those extractions and what follows them run again."""
    copy_run(reference, workdir)
    for path in (*(f"acts/cl-sae/{s}.parquet" for s in shards), *TABLES):
        (workdir / "results" / "cl" / path).unlink()


def test_killed_extraction_is_retried_and_the_results_are_unchanged(reference, tmp_path):
    without_shards(reference, tmp_path, ("00001",))
    run, shard = kill_extraction_mid_write(tmp_path, "--retries", "1")
    assert run.returncode == 0, run.stderr[-4000:]
    assert shard == "00001" and "Error in rule extract" in run.stderr
    assert f"shard={shard}" in run.stderr
    assert "Trying to restart job" in run.stderr
    for name, table in tables(reference).items():
        assert tables(tmp_path)[name].equals(table), name
    assert not list((tmp_path / "results").rglob("*.tmp")), "the retry removes the killed temp file"


def test_rerun_after_a_kill_computes_only_what_is_missing(reference, tmp_path):
    without_shards(reference, tmp_path, ("00001", "00002"))
    run, shard = kill_extraction_mid_write(tmp_path, "--keep-going")
    assert run.returncode != 0
    finished = {p.name: p.stat().st_mtime_ns for p in acts_dir(tmp_path).glob("*.parquet")}
    other = ({"00001", "00002"} - {shard}).pop()
    assert f"{shard}.parquet" not in finished and f"{other}.parquet" in finished  # keep-going
    jobs = planned_jobs(tmp_path, *TARGETS)
    assert jobs == {"extract": 1, "reduce": 1, "score": 1}
    run_snakemake(tmp_path, "--cores", "2", *TARGETS, timeout=1200)
    assert {p: acts_dir(tmp_path).joinpath(p).stat().st_mtime_ns for p in finished} == finished
    for name, table in tables(reference).items():
        assert tables(tmp_path)[name].equals(table), name


def test_grown_corpus_extracts_only_new_shards_and_matches_a_fresh_run(reference, tmp_path):
    grown = tmp_path / "grown"
    grown.mkdir()
    copy_run(reference, grown)
    before = {p.name: p.stat().st_mtime_ns for p in acts_dir(grown).glob("*.parquet")}
    write_config(grown, cluster_config(grown, n_pairs=GROWN_PAIRS))  # 60 pairs appended
    jobs = planned_jobs(grown, *TARGETS)
    assert "extract" not in jobs and jobs["shards"] == 1  # planned once the shards are known
    run_snakemake(grown, "--cores", "2", *TARGETS, timeout=1200)
    after = {p.name: p.stat().st_mtime_ns for p in acts_dir(grown).glob("*.parquet")}
    # 160 -> 220 pairs in blocks of 50: blocks 0-2 are untouched, block 3 (pairs 150..159)
    # fills up and is extracted again, block 4 is new.
    unchanged = [f"0000{i}.parquet" for i in range(3)]
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["00003.parquet"] != before["00003.parquet"] and "00004.parquet" in after

    # From scratch on the grown corpus, in one shard: the same tables, bit for bit.
    # (The model and the SAE, which no corpus change touches, are the reference's.)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    copy_run(reference, fresh)
    shutil.rmtree(fresh / "results")
    write_config(fresh, cluster_config(fresh, n_pairs=GROWN_PAIRS, shard_pairs=GROWN_PAIRS))
    run_snakemake(fresh, "--cores", "2", *TARGETS, timeout=1200)
    assert len(list(acts_dir(fresh).glob("*.parquet"))) == 1
    for name, table in tables(fresh).items():
        assert tables(grown)[name].equals(table), name
    assert not tables(reference)["scores/cl-sae.exact.parquet"].equals(
        tables(grown)["scores/cl-sae.exact.parquet"])  # the scores did update
