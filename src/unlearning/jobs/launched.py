"""How a job fits the processes that its launcher started (SLURM tasks or submitit's local tasks).

Under ``hydra/launcher=slurm`` every SLURM task runs the whole Hydra job function, and
Lightning's ``SLURMEnvironment`` turns those tasks into the DDP processes: Lightning must not
start processes of its own, and ``trainer.devices`` must equal the tasks per node. When the
two disagree Lightning either raises deep inside the Trainer or, inside a multirun, re-runs
the launcher's command line as its "child" processes. :func:`prepare_job` checks this up
front and turns it into one clear :class:`UserError`, sizes torch's thread pool to the CPUs
the scheduler granted, and lets ``hydra/launcher=local`` rehearse a multi-task job by
describing submitit's local tasks to Lightning the way ``torchrun`` would.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from unlearning.errors import UserError

#: Strategies whose extra processes Lightning starts by re-running the command line.
RERUN_STRATEGIES = ("ddp", "auto", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


@dataclass(frozen=True)
class LaunchedTasks:
    """The processes a scheduler started for this job; this process is one of them."""

    scheduler: str  # "slurm" or "submitit-local"
    tasks_per_node: int
    nodes: int
    global_rank: int
    local_rank: int
    cpus_per_task: int | None
    job_id: str


def _leading_int(value: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else None


def launched_tasks() -> LaunchedTasks | None:
    """The tasks SLURM (``srun``) or submitit's local executor started, or None for a plain process.

    Lightning's ``SLURMEnvironment`` says whether this is an srun task (and leaves interactive
    jobs named bash/interactive alone, as Lightning itself does) and gives its ranks; submitit's
    ``JobEnvironment`` does the same for its local executor. Tasks per node and CPUs per task are
    read here: neither library exposes them (SLURM writes ``SLURM_TASKS_PER_NODE`` as ``4(x2)``). A
    setting Lightning would refuse when it builds the Trainer is refused here, before any work.
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment

    env = os.environ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "srun is available but not used": a plain process here is fine
        under_srun = SLURMEnvironment.detect()
    if under_srun:
        try:
            slurm = SLURMEnvironment(auto_requeue=False)
        except RuntimeError as error:  # e.g. --ntasks without --ntasks-per-node, which Lightning refuses
            raise UserError(f"{error} (under hydra/launcher=slurm: hydra.launcher.tasks_per_node).") from None
        nodes = int(env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES") or 1)
        per_node = (_leading_int(env.get("SLURM_NTASKS_PER_NODE"))
                    or _leading_int(env.get("SLURM_TASKS_PER_NODE")) or max(slurm.world_size() // max(nodes, 1), 1))
        return LaunchedTasks("slurm", per_node, nodes, slurm.global_rank() if "SLURM_PROCID" in env else 0,
                             slurm.local_rank() if "SLURM_LOCALID" in env else 0,
                             _leading_int(env.get("SLURM_CPUS_PER_TASK")), str(SLURMEnvironment.job_id() or ""))
    if env.get("SUBMITIT_EXECUTOR") == "local" and "SUBMITIT_LOCAL_NTASKS" in env:
        import submitit

        job = submitit.JobEnvironment()
        return LaunchedTasks("submitit-local", job.num_tasks, 1, job.global_rank, job.local_rank, None, job.job_id)
    return None


def requested_devices(devices: Any) -> int | None:
    """How many processes per node ``trainer.devices`` asks for; None when Lightning decides (``auto``, -1)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices > 0 else None
    if isinstance(devices, list | tuple):
        return len(devices)
    text = str(devices).strip()
    if text.isdigit():
        return int(text)
    if "," in text:  # "0,1" selects devices by index
        return len([part for part in text.split(",") if part.strip()])
    return None


def check_devices_match(cfg: DictConfig, tasks: LaunchedTasks) -> None:
    """One launched task per device and per node, or a UserError that names both settings."""
    devices = requested_devices(cfg.trainer.get("devices", 1))
    if devices is not None and devices != tasks.tasks_per_node:
        raise UserError(
            f"trainer.devices={devices} but {tasks.scheduler} started {tasks.tasks_per_node} task(s) per node "
            f"(hydra.launcher.tasks_per_node={tasks.tasks_per_node}). Inside a launched job Lightning does not "
            "start processes itself: it runs one process per task. Set hydra.launcher.tasks_per_node equal to "
            f"trainer.devices (e.g. hydra.launcher.tasks_per_node={devices}, one task per GPU), or "
            f"trainer.devices={tasks.tasks_per_node}."
        )
    num_nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
    if num_nodes != tasks.nodes:
        raise UserError(
            f"trainer.num_nodes={num_nodes} but the job has {tasks.nodes} node(s) (hydra.launcher.nodes="
            f"{tasks.nodes}); set both to the same number."
        )


def check_no_rerun_in_multirun(cfg: DictConfig, multirun: bool) -> None:
    """Lightning's DDP starts its extra processes by re-running ``sys.argv``; inside a multirun that breaks."""
    devices = requested_devices(cfg.trainer.get("devices", 1))
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if multirun and devices is not None and devices > 1 and strategy in RERUN_STRATEGIES:
        raise UserError(
            f"trainer.devices={devices} with strategy={strategy} inside a multirun (-m) job that no scheduler "
            "started as several tasks: Lightning would start the extra processes by re-running the multirun "
            "command. Let the launcher start them: hydra/launcher=slurm (or local) with "
            f"hydra.launcher.tasks_per_node={devices}, or run without -m."
        )


def limit_threads(cpus: int | None, environ: dict[str, str] | None = None) -> int | None:
    """Give torch as many threads as CPUs the task was granted, unless OMP_NUM_THREADS says otherwise.

    torch otherwise starts one thread per core of the whole node; on a shared node, several
    jobs' thread pools then fight over the same cores (seen here: 39 s instead of 9 s).
    Exporting OMP_NUM_THREADS also stops Lightning's DDP from picking its own count.
    """
    env = os.environ if environ is None else environ
    if not cpus or cpus < 1 or "OMP_NUM_THREADS" in env:
        return None
    torch.set_num_threads(cpus)
    env["OMP_NUM_THREADS"] = str(cpus)
    return cpus


def describe_local_tasks_to_lightning(tasks: LaunchedTasks, environ: dict[str, str] | None = None) -> None:
    """Export torchrun-style variables so Lightning joins submitit's local tasks instead of starting its own.

    Not ``submitit.helpers.TorchDistributedEnvironment().export()``, which does nearly this: it
    narrows ``CUDA_VISIBLE_DEVICES`` to one GPU per task by default (Lightning, given
    ``devices=N``, expects the node's N GPUs), takes the host name as the master address
    (127.0.0.1 always works for tasks of one machine, a host name need not resolve), and raises
    when one of the variables is already set, where a re-submitted task should keep its own.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    env = os.environ if environ is None else environ
    env.setdefault("LOCAL_RANK", str(tasks.local_rank))
    env.setdefault("NODE_RANK", "0")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    # All tasks must agree on the port without talking to each other: derive it from the job id.
    env.setdefault("MASTER_PORT", str(20000 + (_leading_int(tasks.job_id) or 0) % 20000))
    rank_zero_only.rank = tasks.global_rank


def prepare_job(cfg: DictConfig) -> LaunchedTasks | None:
    """Call first in a task function: check devices against launched tasks, size threads, wire local tasks."""
    tasks = launched_tasks()
    multirun, launcher_cpus = _hydra_facts()
    if tasks is None:
        check_no_rerun_in_multirun(cfg, multirun)
        return None
    check_devices_match(cfg, tasks)
    # SLURM exports the granted CPUs; submitit's local executor does not, so take the launcher's setting.
    limit_threads(tasks.cpus_per_task if tasks.scheduler == "slurm" else launcher_cpus)
    if tasks.scheduler == "submitit-local" and tasks.tasks_per_node > 1:
        describe_local_tasks_to_lightning(tasks)
    return tasks


def _hydra_facts() -> tuple[bool, int | None]:
    """(is this a multirun job, the launcher's cpus_per_task) from Hydra's runtime config, if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, None
    hydra_cfg = HydraConfig.get()
    cpus = hydra_cfg.launcher.get("cpus_per_task") if "launcher" in hydra_cfg else None
    return hydra_cfg.mode == RunMode.MULTIRUN, _leading_int(str(cpus)) if cpus is not None else None
