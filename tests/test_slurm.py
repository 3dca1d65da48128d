"""Sweeps and multi-process jobs through Hydra's submitit launcher, on a real SLURM cluster.

The cluster is the single-node one of ``scripts/slurm-local.sh`` (see tests/slurm_cluster.py).
Every job unlearns from the session's trained digits model, so nothing is retrained.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, published_path, run_cli
from tests.slurm_cluster import (  # noqa: F401
    ACCOUNT,
    finished_jobs,
    queued_job_ids,
    slurm_cluster,
    step_task_pids,
    wait_until,
)

WEIGHTS = Path("unlearned") / "model.safetensors"


def job_name(kind: str) -> str:
    """A name no earlier job in the (persistent) accounting database has."""
    return f"ut-{kind}-{uuid.uuid4().hex[:8]}"


def common(trained_root: Path) -> list[str]:
    """Overrides of every job here: the session's trained model, quiet, CPU only."""
    return [f"paths.checkpoint_dir={trained_root / 'checkpoints'}", "logger=none",
            "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def slurm(name: str, cpus: int = 1, *extra: str) -> list[str]:
    return ["hydra/launcher=slurm", "hydra.launcher.partition=debug", f"hydra.launcher.name={name}",
            f"hydra.launcher.cpus_per_task={cpus}", *extra]


def results(run_dir: Path) -> dict | None:
    path = run_dir / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def assert_no_partial_outputs(run_dir: Path) -> None:
    """Whatever a run left is whole: results.json parses and is complete; a checkpoint loads."""
    found = results(run_dir)
    assert found is None or found["status"] == "complete", f"{run_dir}/results.json is incomplete"
    checkpoint = run_dir / "unlearned"
    if (checkpoint / "metadata.json").exists():
        json.loads((checkpoint / "metadata.json").read_text())
        assert load_file(str(checkpoint / "model.safetensors")), f"{checkpoint} holds no tensors"


def job_logs(sweep_dir: Path) -> dict[str, str]:
    """Every submitit log of a sweep, keyed by file name (``<job>_<task>_log.out``)."""
    return {path.name: path.read_text(errors="replace") for path in sweep_dir.glob(".submitit/*/*_log.*")}


def multirun_failure(result: subprocess.CompletedProcess) -> str:
    return f"multirun failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


# --- a sweep of 4 runs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_sweep(slurm_cluster, trained_root, tmp_path_factory):  # noqa: F811
    """SSD and LFSSD forgetting digits 3 and 5: 4 SLURM array tasks, at most 2 at a time."""
    root = tmp_path_factory.mktemp("slurm-sweep")
    name = job_name("sweep")
    sweep_dir = root / "sweep"
    result = run_cli(
        "unlearn.py", "-m", "method=ssd,lfssd", "task.forget=3,5", f"hydra.sweep.dir={sweep_dir}",
        *common(trained_root),
        *slurm(name, 1, "hydra.launcher.array_parallelism=2", "hydra.launcher.timeout_min=20",
               "hydra.launcher.mem_gb=2", f"hydra.launcher.account={ACCOUNT}",
               "hydra.launcher.setup=['echo setup line ran with $SLURM_CPUS_PER_TASK cpu']"),
        root=root, timeout=1200,
    )
    return result, sweep_dir, name


@pytest.mark.slurm
def test_slurm_sweep_completes_every_run_with_the_requested_resources(slurm_sweep):
    result, sweep_dir, name = slurm_sweep
    assert result.returncode == 0, multirun_failure(result)
    done = {}
    for number in range(4):
        found = results(sweep_dir / str(number))
        assert found is not None and found["status"] == "complete", f"run {number} has no complete results.json"
        assert (sweep_dir / str(number) / WEIGHTS).is_file()
        done[(found["method"], found["forget_target"])] = found
    assert set(done) == {("ssd", "3"), ("ssd", "5"), ("lfssd", "3"), ("lfssd", "5")}

    # SLURM itself ran 4 array tasks with what the launcher config asked for.
    jobs = finished_jobs(name, 4)
    assert len(jobs) == 4, jobs
    assert {job["State"] for job in jobs} == {"COMPLETED"}, jobs
    assert {job["Account"] for job in jobs} == {ACCOUNT}
    assert {job["Timelimit"] for job in jobs} == {"00:20:00"}
    assert {job["AllocCPUS"] for job in jobs} == {"1"}
    script = next(sweep_dir.glob(".submitit/*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --mem=2GB" in script
    logs = job_logs(sweep_dir)
    assert sum("setup line ran with 1 cpu" in text for name_, text in logs.items() if name_.endswith(".out")) == 4
    assert not queued_job_ids(name)


@pytest.mark.slurm
def test_report_aggregates_the_slurm_sweep(slurm_sweep, tmp_path):
    pytest.importorskip("unlearning.report", reason="unlearning.report (issue 5) is not on this branch")
    result, sweep_dir, _ = slurm_sweep
    assert result.returncode == 0, multirun_failure(result)
    out = tmp_path / "report"
    report = subprocess.run([sys.executable, "-m", "unlearning.report", str(sweep_dir), "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "4 runs" in report.stdout, report.stdout[-2000:]
    with open(out / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert sorted(row["method"] for row in rows) == ["lfssd", "lfssd", "ssd", "ssd"]
    assert re.search(r"\blfssd\b", (out / "report.md").read_text())


# --- multi-process (DDP) jobs --------------------------------------------------------------------

DDP_RUN = ["method=ssd", "task.forget=3"]


@pytest.fixture(scope="module")
def one_process_weights(trained_root, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The dampened weights of a plain 1-process run, the reference for the multi-process ones."""
    root = tmp_path_factory.mktemp("one-process")
    run_cli("unlearn.py", *DDP_RUN, *common(trained_root), f"hydra.run.dir={root / 'run'}",
            root=root, timeout=900, check=True, env={"OMP_NUM_THREADS": "1"})
    assert results(root / "run")["method_info"]["devices"] == 1
    return load_file(str(root / "run" / WEIGHTS))


def assert_same_dampening(run_dir: Path, reference: dict[str, torch.Tensor], trained_root: Path) -> None:
    found = results(run_dir)
    assert found is not None and found["status"] == "complete"
    assert found["method_info"]["devices"] == 2
    weights = load_file(str(run_dir / WEIGHTS))
    assert weights.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], rtol=1e-5, atol=1e-7, msg=key)
    original = load_file(str(published_path(trained_root) / "model.safetensors"))
    changed = sum(int((weights[k] != original[k]).sum()) for k in weights)
    assert changed > 0 and changed == found["method_info"]["parameters_changed"]


@pytest.mark.slurm
@pytest.mark.distributed
def test_ddp_job_with_two_slurm_tasks_matches_one_process(slurm_cluster, trained_root, tmp_path,  # noqa: F811
                                                          one_process_weights):
    name = job_name("ddp")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("unlearn.py", "-m", *DDP_RUN, "trainer=ddp", "trainer.devices=2", f"hydra.sweep.dir={sweep_dir}",
                     *common(trained_root), *slurm(name, 1, "hydra.launcher.tasks_per_node=2"),
                     root=tmp_path, timeout=900)
    assert result.returncode == 0, multirun_failure(result)
    assert_same_dampening(sweep_dir / "0", one_process_weights, trained_root)

    # Each SLURM task was one DDP rank (Lightning started no process of its own), and
    # only rank 0 evaluated and wrote.
    logs = job_logs(sweep_dir)
    out0 = next(text for log, text in logs.items() if log.endswith("_0_log.out"))
    out1 = next(text for log, text in logs.items() if log.endswith("_1_log.out"))
    # Lightning's notices go through Hydra's logging (stdout); each rank logs its own membership.
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in out0 and "GLOBAL_RANK: 1, MEMBER: 2/2" in out1
    assert "results:" in out0 and "results:" not in out1
    assert "global_rank=1(2)" in out1
    [job] = finished_jobs(name, 1)
    assert job["State"] == "COMPLETED" and job["AllocCPUS"] == "2"


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_job_with_two_local_submitit_tasks_matches_one_process(trained_root, tmp_path, one_process_weights):
    """hydra/launcher=local rehearses the SLURM job: 2 submitit tasks become the 2 DDP ranks."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli("unlearn.py", "-m", *DDP_RUN, "trainer=ddp", "trainer.devices=2", f"hydra.sweep.dir={sweep_dir}",
                     *common(trained_root), "hydra/launcher=local", "hydra.launcher.tasks_per_node=2",
                     root=tmp_path, timeout=900)
    assert result.returncode == 0, multirun_failure(result)
    assert_same_dampening(sweep_dir / "0", one_process_weights, trained_root)
    logs = job_logs(sweep_dir)
    assert any("GLOBAL_RANK: 1, MEMBER: 2/2" in text for log, text in logs.items() if "_1_log" in log)


# --- faults: a job killed mid-run, the sweep cancelled, then the same multirun again ----------------


@pytest.mark.slurm
def test_killed_and_cancelled_jobs_leave_nothing_half_written_and_resubmission_redoes_only_the_rest(
        slurm_cluster, trained_root, tmp_path):  # noqa: F811
    name = job_name("faults")
    sweep_dir = tmp_path / "sweep"
    # One array task at a time: run 0 completes, run 1 is SIGKILLed while it computes, then
    # `scancel` cancels the sweep, so run 2 never starts.
    command = [sys.executable, str(ROOT / "unlearn.py"), "-m", "method=lfssd", "task.forget=3,5,7", "resume=true",
               f"hydra.sweep.dir={sweep_dir}", *common(trained_root),
               *slurm(name, 1, "hydra.launcher.array_parallelism=1")]
    env = {**os.environ, "UNLEARNING_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: results(sweep_dir / "0") is not None, 900, "run 0 to complete")
        run1_out = lambda: "".join(t for n, t in job_logs(sweep_dir).items() if re.search(r"_1_0_log\.out$", n))  # noqa: E731
        wait_until(lambda: "Unlearning " in run1_out(), 300, "run 1 to start unlearning")
        array_job = queued_job_ids(name)[0].split("_")[0]
        # SIGKILL at once (scancel's own SIGTERM is ignored by submitit and SIGKILL follows only
        # KillWait seconds later, by which time a fast run may have finished).
        [pid] = step_task_pids(f"{array_job}_1")
        os.kill(pid, signal.SIGKILL)
        assert results(sweep_dir / "1") is None, "run 1 finished before it could be killed"
        subprocess.run(["scancel", array_job], check=True)
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    first_output = (tmp_path / "first.log").read_text()
    assert first.returncode != 0, first_output[-3000:]

    states = {job["JobID"]: job["State"].split()[0] for job in finished_jobs(name, 2)}
    assert states.get(f"{array_job}_0") == "COMPLETED", states
    assert states.get(f"{array_job}_1") in ("FAILED", "CANCELLED"), states
    for number in range(3):
        assert_no_partial_outputs(sweep_dir / str(number))
    assert results(sweep_dir / "1") is None and not (sweep_dir / "1" / WEIGHTS).exists()
    assert results(sweep_dir / "2") is None
    kept = (sweep_dir / "0" / "results.json").stat().st_mtime_ns
    kept_text = (sweep_dir / "0" / "results.json").read_text()

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, multirun_failure(second)
    assert (sweep_dir / "0" / "results.json").stat().st_mtime_ns == kept
    assert (sweep_dir / "0" / "results.json").read_text() == kept_text
    for number in (1, 2):
        found = results(sweep_dir / str(number))
        assert found is not None and found["status"] == "complete", f"run {number} was not redone"
        assert (sweep_dir / str(number) / "results.json").stat().st_mtime_ns > kept
    skipped = [text for log, text in job_logs(sweep_dir).items() if log.endswith(".out") and "resume:" in text]
    assert len(skipped) == 1 and f"{sweep_dir / '0' / 'results.json'} is complete" in skipped[0]


@pytest.mark.slurm
def test_scancel_is_a_sigkill_after_killwait_for_submitit_jobs(slurm_cluster, trained_root, tmp_path):  # noqa: F811
    """A plain `scancel` of a running job: submitit ignores the SIGTERM, SLURM then kills it.

    Whatever point the run had reached, its folder holds a complete results.json or none.
    The job is a retrain (20 epochs, minutes on one CPU): an SSD run on a quiet machine can
    finish within the KillWait (10 s) that separates SIGTERM from SIGKILL.
    """
    name = job_name("scancel")
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, str(ROOT / "unlearn.py"), "-m", "method=retrain", "task.forget=4",
               f"hydra.sweep.dir={sweep_dir}", *common(trained_root), *slurm(name, 1)]
    env = {**os.environ, "UNLEARNING_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "run.log", "w") as log:
        run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        out = lambda: "".join(t for n, t in job_logs(sweep_dir).items() if n.endswith("_0_log.out"))  # noqa: E731
        wait_until(lambda: "Unlearning " in out(), 600, "the run to start unlearning")
        subprocess.run(["scancel", queued_job_ids(name)[0]], check=True)
        run.wait(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    [job] = finished_jobs(name, 1)
    assert job["State"].startswith("CANCELLED"), job
    errors = "".join(t for n, t in job_logs(sweep_dir).items() if n.endswith("_0_log.err"))
    assert "Bypassing signal SIGTERM" in errors
    assert_no_partial_outputs(sweep_dir / "0")
