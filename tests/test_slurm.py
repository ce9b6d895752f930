"""The slurm profile on a real SLURM: a one-node cluster on localhost (scripts/slurm-up.sh, with
accounting and one dummy GPU) runs the tiny DAG's tables and two grouped rules through
`snakemake --profile slurm`, typed as users type it in the repository root (the committed link `slurm` -> profiles/slurm); every job must
have gone through sbatch, the GPU rules must have asked for and got a GPU, and the tables must
equal bit for bit those of the same config's whole DAG run locally through profiles/local.

One extraction job is SIGKILLed while it runs, as the OOM killer or a node fault would: the
profile's retries must resubmit it and the tables must still be the local run's.

Needs root and Debian's slurm-wlm (scripts/install.sh installs it): skipped without them, except
under CI (env CI set), where that is a failure; POLYGLOT_SLURM_TESTS=0 skips it. Starts the
cluster unless it is already up (then leaves it running) and stops what it started at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import ROOT, SNAKEMAKE, proc_pids, run_snakemake, script_pids, write_config
from test_workflow import planned_jobs, tiny_config

pytestmark = pytest.mark.slurm

# Snakemake looks a profile name up in the working directory first (then ~/.config/snakemake and
# /etc/xdg/snakemake): the repository root's `slurm` link makes `--profile slurm` find it there.
PROFILE = ROOT / "slurm"
STATE = Path(os.environ.get("SLURM_STATE_DIR", "/tmp/polyglot-slurm"))
# Wall-clock cap of each Snakemake run: a lost job status makes the plugin wait forever while
# ignoring SIGTERM, hence `timeout -k` (SIGKILL 10 s after the SIGTERM).
RUN_LIMIT_S = 1500
# The tables compared bit for bit with the local run's.
TABLES = ("maxacts/tiny-sae.parquet", "scores/tiny-sae.exact.parquet", "scores/tiny-sae.seed.parquet")
# What the SLURM run makes: the tables, and outputs of two grouped rules (`post`) that bring in
# the SAE's quality; every GPU rule but the MCS ladder's. The whole DAG runs locally elsewhere
# (test_workflow), and SLURM adds a submission and a status poll per job, not new rules.
SLURM_TARGETS = (*(f"results/tiny/{t}" for t in TABLES), "results/tiny/sae_quality/tiny-sae.json",
                 "results/tiny/sweeps/saes.parquet",
                 "results/tiny/figures/tiny-sae.exact.bi_curve.png")


def _profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def _gpu_rules() -> set[str]:
    return {rule for rule, res in _profile()["set-resources"].items() if res.get("gpu")}


def _unavailable() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    # It starts daemons and takes minutes: POLYGLOT_SLURM_TESTS=0 skips it on a workstation.
    if os.environ.get("POLYGLOT_SLURM_TESTS") == "0":
        return "POLYGLOT_SLURM_TESTS=0 skips the slurm tier"
    if os.geteuid() != 0:
        return "needs root to start slurmd, slurmdbd and munged (run as root, or in CI)"
    if not shutil.which("slurmctld") and not os.environ.get("CI"):
        return "Debian slurm-wlm is not installed (scripts/install.sh installs it; CI does)"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not (conf.is_symlink() and Path(os.readlink(conf)) == STATE / "slurm.conf"):
        return f"{conf} belongs to this machine's own SLURM; the test cluster would clash with it"
    return None


def _script(name: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / name)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "SLURM_STATE_DIR": str(STATE)})


@pytest.fixture(scope="module")
def cluster():
    """The running test cluster: started here unless it already runs, stopped if started here."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") and os.environ.get("POLYGLOT_SLURM_TESTS") != "0":
            pytest.fail(f"CI must run the slurm tests: {reason}")
        pytest.skip(reason)
    t0 = time.monotonic()
    up = _script("slurm-up.sh")
    if up.returncode != 0:
        down = _script("slurm-down.sh")  # slurm-up stops what it started on failure; be sure
        pytest.fail(f"slurm-up.sh failed ({up.returncode}):\n{up.stderr[-5000:]}\n{down.stderr}")
    started = "already up" not in up.stderr
    print(f"\ncluster {'up' if started else 'already running'} in {time.monotonic() - t0:.1f} s")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(STATE / "slurm.conf")  # the clients Snakemake and we call
    try:
        yield STATE
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        if started:
            down = _script("slurm-down.sh")
            assert down.returncode == 0, down.stderr


def _profile_cmd(workdir: Path) -> list[str]:
    """`snakemake --profile slurm` as users type it in the repository root (run with cwd=ROOT),
    plus what points it at the test's workdir and config."""
    return [SNAKEMAKE, "--profile", "slurm", "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml")]


def test_profile_is_found_by_name(tmp_path):
    """No cluster needed: the plain `--profile slurm` resolves to profiles/slurm and plans."""
    write_config(tmp_path, tiny_config(tmp_path))
    proc = subprocess.run([*_profile_cmd(tmp_path), "-n"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]  # not "profile directory given (slurm), but no ..."
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles" / "slurm").resolve()
    assert "Job stats:" in out and "shards" in out


def _slurm_run(workdir: Path) -> subprocess.CompletedProcess:
    """Snakemake through the slurm profile, capped by `timeout -k`; on failure, what went wrong."""
    snakemake, *options = _profile_cmd(workdir)  # targets first: --configfile takes a list
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT_S), snakemake, *SLURM_TARGETS, *options,
           # Poll sacct 1 s after submitting (the profile's 10 s would add ~10 s per DAG level).
           "--slurm-init-seconds-before-status-checks", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_LIMIT_S + 60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        slurm_logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                               for p in (workdir / ".snakemake" / "slurm_logs").rglob("*.log")
                               if "Error" in p.read_text() or "error" in p.read_text())
        ctld = (STATE / "logs" / "slurmctld.log")
        ctld_tail = "\n".join(ctld.read_text().splitlines()[-30:]) if ctld.exists() else ""
        raise AssertionError(f"snakemake --profile slurm failed ({proc.returncode}"
                             f"{', timed out' if proc.returncode in (124, 137) else ''}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}\n{slurm_logs}\n"
                             f"--- slurmctld.log\n{ctld_tail}")
    return proc


def _sacct(run_id: str) -> list[dict[str, str]]:
    """The accounting records of the run's jobs (the plugin names each job after the run ID)."""
    fields = ["JobIDRaw", "JobName", "Comment", "State", "ReqTRES", "AllocTRES", "Account",
              "Partition"]
    out = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime", "now-1days", "--name", run_id,
                          "--format", ",".join(f"{f}%300" for f in fields)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]


def _kill_one_running(rule: str, workdir: Path, stop: threading.Event) -> str | None:
    """SIGKILL the script of the first job of `rule` seen running, as the OOM killer or a node
    fault would; the SLURM job id. (Not `scancel`: sacct then reports "CANCELLED by <uid>",
    which snakemake-executor-plugin-slurm 2.8.0 does not recognise as finished, so Snakemake
    would wait forever.)"""
    while not stop.is_set():
        out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True,
                             timeout=60).stdout
        for line in out.splitlines():
            job_id, comment, state = line.split("|")
            if not (comment.startswith(f"rule_{rule}_") and state == "RUNNING"):
                continue
            pids = script_pids(workdir, f".{rule}.py")
            if pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                return job_id
        time.sleep(0.2)
    return None


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory, request):
    """The tiny DAG's tables through SLURM, and the jobs Snakemake planned for it; beside it, the
    same config's whole DAG run locally (conftest.tiny_dag, shared with test_workflow), which
    uses the CPUs while SLURM jobs queue."""
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, tiny_config(workdir))
    planned = planned_jobs(workdir, *SLURM_TARGETS)
    t0 = time.monotonic()
    stop = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        slurm = pool.submit(_slurm_run, workdir)
        killed = pool.submit(_kill_one_running, "extract", workdir, stop)
        try:
            local, _ = request.getfixturevalue("tiny_dag")
            proc = slurm.result()
        finally:
            stop.set()
    print(f"\nslurm run and local DAG {time.monotonic() - t0:.0f} s")
    # Extraction jobs exist once the `shards` checkpoint has cut the corpus: not in the dry run.
    manifest = json.loads((workdir / "results" / "toy" / "shards.json").read_text())
    planned["extract"] = len(manifest["shards"])
    return {"slurm": workdir, "local": local}, planned, proc, killed.result()


def test_every_job_went_through_sbatch(runs):
    dirs, planned, proc, killed = runs
    out = proc.stdout + proc.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", out)[1]
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", out))
    records = [r for r in _sacct(run_id) if r["JobIDRaw"] != killed]
    assert {r["JobIDRaw"] for r in records} | {killed} == submitted and submitted
    assert all(r["State"] == "COMPLETED" for r in records), records
    assert {(r["Account"], r["Partition"]) for r in records} == {("polyglot", "main")}
    # The plugin comments each job `rule_<rule>[_wildcards_<values>]`, a group job (one per
    # connected part of a profile group) `rule_<group>_<its rules, sorted>` cut short with "...".
    comments = [r["Comment"] for r in records]
    groups = _profile()["groups"]
    for rule, count in planned.items():
        if rule == "all":  # no action: Snakemake handles it itself
            continue
        if rule in groups:
            assert any(c.startswith(f"rule_{groups[rule]}_") for c in comments), (rule, comments)
        else:
            mine = [c for c in comments if c == f"rule_{rule}" or c.startswith(f"rule_{rule}_wildcards_")]
            assert len(mine) == count, (rule, count, comments)


def test_a_killed_job_was_resubmitted(runs):
    dirs, planned, proc, killed = runs
    assert killed, "no extraction job was seen running"
    run_id = re.search(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr)[1]
    records = {r["JobIDRaw"]: r for r in _sacct(run_id)}
    assert records[killed]["State"] == "FAILED", records[killed]
    again = [r for r in records.values()
             if r["Comment"] == records[killed]["Comment"] and r["JobIDRaw"] != killed]
    assert [r["State"] for r in again] == ["COMPLETED"], again
    assert "Trying to restart job" in proc.stdout + proc.stderr


def test_gpu_rules_asked_for_and_got_a_gpu(runs):
    dirs, planned, proc, killed = runs
    run_id = re.search(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr)[1]
    gpu_rules = _gpu_rules()
    assert gpu_rules >= {"prepare_model", "cache_train_acts", "build_sae", "train_ladder_sae",
                         "evaluate_sae", "extract"}
    seen = set()
    for r in _sacct(run_id):
        if r["JobIDRaw"] == killed:
            continue
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", r["Comment"])
        if rule and rule[1] in gpu_rules:
            seen.add(rule[1])
            assert "gres/gpu=1" in r["ReqTRES"] and "gres/gpu=1" in r["AllocTRES"], r
        else:
            assert "gres/gpu" not in r["AllocTRES"], r
    # Each got the node's (dummy) GPU, i.e. CUDA_VISIBLE_DEVICES, and, CUDA being absent here,
    # ran on the CPU: they completed (above), with the local run's results (next test).
    assert seen == gpu_rules & set(planned)


def test_tables_equal_a_local_run(runs):
    dirs, planned, proc, killed = runs
    for table in TABLES:
        a = pl.read_parquet(dirs["slurm"] / "results" / "tiny" / table)
        b = pl.read_parquet(dirs["local"] / "results" / "tiny" / table)
        assert a.height > 0 and a.equals(b), table
    assert planned_jobs(dirs["slurm"], *SLURM_TARGETS) == {}  # nothing left to do


def _job_processes(marker: bytes) -> list[int]:
    """The slurmstepd daemons and the processes whose command line contains `marker`."""
    return proc_pids(lambda proc: (proc / "comm").read_text().strip() == "slurmstepd"
                     or marker in (proc / "cmdline").read_bytes())


def test_up_again_after_a_hard_stop(cluster):
    """A cluster stopped hard while a job ran (daemons killed, as by a reboot or a killed CI
    session) must come back: slurmctld recovers the job as RUNNING on a node that no longer runs
    it, and the node would never turn idle. Runs last: it restarts the cluster."""
    job = subprocess.run(["sbatch", "--parsable", "-A", "polyglot", "-p", "main", "-o", "/dev/null",
                          "--wrap", "sleep 3001"], capture_output=True, text=True, check=True,
                         timeout=60).stdout.strip()
    deadline = time.monotonic() + 60
    while subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                         text=True, timeout=60).stdout.strip() != "RUNNING":
        assert time.monotonic() < deadline, f"job {job} never started"
        time.sleep(0.5)
    pid = {name: int((STATE / "pids" / f"{name}.pid").read_text()) for name in
           ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")}
    os.kill(pid["slurmd"], signal.SIGKILL)
    for p in _job_processes(b"sleep\x003001"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    os.kill(pid["slurmctld"], signal.SIGTERM)  # saves its state, the job RUNNING in it
    while Path(f"/proc/{pid['slurmctld']}").exists() and "zombie" not in \
            Path(f"/proc/{pid['slurmctld']}/status").read_text():
        time.sleep(0.2)
    for name in ("slurmdbd", "mariadbd", "munged"):
        os.kill(pid[name], signal.SIGKILL)

    up = _script("slurm-up.sh")
    assert up.returncode == 0, up.stderr[-3000:]
    assert "already up" not in up.stderr
    assert subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%t"], capture_output=True,
                          text=True, timeout=60).stdout.strip() == "idle"
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                          timeout=60).stdout.strip() == ""
