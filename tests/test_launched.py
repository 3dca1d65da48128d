"""How a job fits the tasks its launcher started: detection, the devices check, threads."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import QUIET, compose_config, run_cli
from unlearning.errors import UserError
from unlearning.jobs.launched import (
    check_devices_match,
    check_no_rerun_in_multirun,
    launched_tasks,
    limit_threads,
    requested_devices,
)

SLURM_TWO_TASKS = {"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "unlearn", "SLURM_NTASKS": "2",
                   "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
                   "SLURM_CPUS_PER_TASK": "3"}


@pytest.fixture
def environment(monkeypatch):
    """Sets the process's scheduler variables to a given mapping (and nothing else of SLURM's or submitit's)."""
    import os

    def use(env: dict[str, str]) -> None:
        for key in list(os.environ):
            if key.startswith(("SLURM_", "SUBMITIT_")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return use


def test_slurm_tasks_are_read_from_srun_environment(environment):
    environment(SLURM_TWO_TASKS)
    tasks = launched_tasks()
    assert (tasks.scheduler, tasks.tasks_per_node, tasks.nodes, tasks.global_rank, tasks.local_rank,
            tasks.cpus_per_task, tasks.job_id) == ("slurm", 2, 1, 1, 1, 3, "42")
    # --ntasks without --ntasks-per-node: Lightning's SLURMEnvironment refuses it; here it is a UserError, early
    env = {**SLURM_TWO_TASKS, "SLURM_NTASKS": "8", "SLURM_NNODES": "2", "SLURM_TASKS_PER_NODE": "4(x2)"}
    del env["SLURM_NTASKS_PER_NODE"]
    environment(env)
    with pytest.raises(UserError, match="ntasks-per-node"):
        launched_tasks()
    environment({**env, "SLURM_NTASKS_PER_NODE": "4"})
    assert (launched_tasks().tasks_per_node, launched_tasks().nodes) == (4, 2)


def test_interactive_and_plain_processes_are_not_launched_tasks(environment):
    environment({**SLURM_TWO_TASKS, "SLURM_JOB_NAME": "interactive"})
    assert launched_tasks() is None
    environment({})
    assert launched_tasks() is None
    environment({"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1",
                 "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_ID": "1234"})
    local = launched_tasks()
    assert (local.scheduler, local.tasks_per_node, local.global_rank, local.local_rank, local.cpus_per_task,
            local.job_id) == ("submitit-local", 2, 1, 1, None, "1234")


@pytest.mark.parametrize(("devices", "expected"), [(1, 1), (2, 2), ("2", 2), ([0, 1], 2), ("0,1", 2),
                                                    ("auto", None), (-1, None)])
def test_requested_devices(devices, expected):
    assert requested_devices(devices) == expected


def test_devices_must_equal_tasks_per_node(environment):
    environment(SLURM_TWO_TASKS)
    tasks = launched_tasks()
    check_devices_match(compose_config("unlearn", ["trainer=ddp"]), tasks)  # 2 devices, 2 tasks
    check_devices_match(compose_config("unlearn", ["trainer=ddp", "trainer.devices=auto"]), tasks)
    with pytest.raises(UserError, match=r"trainer.devices=1 .*tasks_per_node=2\)"):
        check_devices_match(compose_config("unlearn", []), tasks)
    with pytest.raises(UserError, match=r"trainer.num_nodes=2 .* 1 node"):
        check_devices_match(compose_config("unlearn", ["trainer=ddp", "trainer.num_nodes=2"]), tasks)


def test_multirun_refuses_processes_that_lightning_would_start_by_rerunning_the_command():
    ddp = compose_config("unlearn", ["trainer=ddp"])
    with pytest.raises(UserError, match="hydra.launcher.tasks_per_node=2"):
        check_no_rerun_in_multirun(ddp, multirun=True)
    check_no_rerun_in_multirun(ddp, multirun=False)
    check_no_rerun_in_multirun(compose_config("unlearn", ["trainer=ddp", "trainer.strategy=ddp_spawn"]), multirun=True)
    check_no_rerun_in_multirun(compose_config("unlearn", []), multirun=True)


def test_threads_follow_the_granted_cpus_unless_omp_num_threads_is_set():
    before = torch.get_num_threads()
    try:
        env: dict[str, str] = {}
        assert limit_threads(1, env) == 1
        assert torch.get_num_threads() == 1 and env == {"OMP_NUM_THREADS": "1"}
        torch.set_num_threads(before)
        assert limit_threads(1, {"OMP_NUM_THREADS": "2"}) is None
        assert torch.get_num_threads() == before
        assert limit_threads(None, {}) is None
    finally:
        torch.set_num_threads(before)


def test_multirun_with_ddp_and_no_launched_tasks_is_a_user_error(tmp_path):
    """The check runs before anything is loaded: a clear message, not Lightning re-running `-m`."""
    result = run_cli("unlearn.py", "-m", "trainer=ddp", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     "train_if_missing=false", *QUIET, root=tmp_path, timeout=300)
    assert result.returncode != 0
    assert "hydra.launcher.tasks_per_node=2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sweep" / "0" / "results.json").exists()
