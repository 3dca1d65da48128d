"""A real single-node SLURM cluster for the ``slurm`` tests, run by ``scripts/slurm-local.sh``.

The session fixture starts the cluster (installing slurm-wlm, slurmdbd, munge and MariaDB
when missing, which needs root) and stops it at the end only if this session started it.
Helpers ask SLURM itself (``squeue``, ``sacct``) what happened to the jobs.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
#: The account the script creates for root (see SLURM_LOCAL_ACCOUNT in the script).
ACCOUNT = os.environ.get("SLURM_LOCAL_ACCOUNT", "tests")


def _script(command: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout)


def cluster_answers() -> bool:
    """True when slurmctld answers ``sinfo`` (whoever started it)."""
    return _script("status", timeout=60).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A running cluster with accounting; stopped afterwards only if this fixture started it."""
    was_up = cluster_answers()
    if not was_up and os.geteuid() != 0:
        pytest.skip("no SLURM cluster answers and starting one (scripts/slurm-local.sh start) needs root")
    # `start` is idempotent: it starts only what is missing and brings an older configuration
    # (e.g. one without accounting) up to date. A cluster it did not start makes it refuse;
    # then use that cluster as it is.
    started = _script("start", timeout=900)
    if started.returncode != 0 and not was_up:
        pytest.fail(f"scripts/slurm-local.sh start failed ({started.returncode}):\n"
                    f"{started.stdout[-3000:]}\n{started.stderr[-5000:]}")
    try:
        yield
    finally:
        if not was_up:
            stopped = _script("stop", timeout=300)
            assert stopped.returncode == 0, f"scripts/slurm-local.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"


def sacct_jobs(name: str) -> list[dict[str, str]]:
    """One row per job allocation (array tasks included) named ``name``, from SLURM's accounting."""
    fields = ["JobID", "JobName", "State", "Account", "Timelimit", "AllocCPUS", "ExitCode"]
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "--name", name, "-S", "now-1days", "-o", ",".join(fields)],
        capture_output=True, text=True, check=True,
    ).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]


#: States of a job that may still change (see `man sacct`, JOB STATE CODES).
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def finished_jobs(name: str, count: int, timeout: float = 180) -> list[dict[str, str]]:
    """The ``count`` jobs named ``name`` once SLURM has finished them all.

    A multirun returns as soon as every job has written its result, which can be a moment
    before SLURM records the job as completed (its processes still exiting).
    """
    jobs: list[dict[str, str]] = []

    def settled() -> bool:
        nonlocal jobs
        jobs = sacct_jobs(name)
        return len(jobs) >= count and not any(job["State"].split()[0] in ACTIVE_STATES for job in jobs)

    wait_until(settled, timeout, f"SLURM to finish the {count} job(s) named {name}")
    return jobs


def step_task_pids(job_id: str, step: str = "0") -> list[int]:
    """Pids of the tasks of one job step (the processes ``srun`` started), from ``scontrol listpids``.

    ``job_id`` may name an array task (``12_3``); scontrol wants that task's own numeric id.
    """
    numeric = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%A"], capture_output=True, text=True,
                             check=True).stdout.split()
    out = subprocess.run(["scontrol", "listpids", numeric[0]], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return [int(row[0]) for row in rows if len(row) >= 5 and row[2] == step and row[3] != "-"]


def queued_job_ids(name: str) -> list[str]:
    """Ids of the pending or running jobs named ``name`` (array tasks as 12_3)."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return out.split()


def wait_until(condition, timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll ``condition()`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
