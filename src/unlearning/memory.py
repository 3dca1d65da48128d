"""Memory per run of a sweep: a Hydra callback that records RSS and live tensors after every job.

A long multirun in one process (Hydra's basic launcher) must not grow from run to run.
Add the callback to any sweep and read one JSON line per job from ``memory.jsonl``::

    python unlearn.py -m method.alpha=1,2,3 +hydra.callbacks.memory._target_=unlearning.memory.MemoryLog

Each line has the job number, the resident set size now and at peak (MiB), the number of
live ``torch.Tensor`` objects, of all objects tracked by the garbage collector and of
logging handlers, and the CUDA memory still allocated, all after a full garbage collection.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

MIB = 1024 * 1024


def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def live_tensors() -> int:
    import torch

    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def log_handlers() -> int:
    """Handlers on every logger: a job that adds one per run without removing it leaks (and logs twice)."""
    import logging

    loggers = [logging.getLogger()] + [logger for logger in logging.root.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    return sum(len(logger.handlers) for logger in loggers)


def snapshot() -> dict[str, Any]:
    """Memory figures of this process after a full garbage collection."""
    import torch

    gc.collect()
    record = {"rss_mib": round(rss_mib(), 1), "peak_rss_mib": round(peak_rss_mib(), 1),
              "tensors": live_tensors(), "gc_objects": len(gc.get_objects()), "log_handlers": log_handlers()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        record["cuda_allocated_mib"] = round(torch.cuda.memory_allocated() / MIB, 1)
    return record


class MemoryLog(Callback):
    """Appends a :func:`snapshot` per finished job to ``path`` (default: the sweep folder's memory.jsonl)."""

    def __init__(self, path: str | None = None):
        self.path = path

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        hydra = config.hydra
        folder = hydra.sweep.dir if hydra.mode and str(hydra.mode).endswith("MULTIRUN") else hydra.runtime.output_dir
        path = Path(self.path or Path(str(folder)) / "memory.jsonl")
        num = hydra.job.get("num")
        record = {"job": num if num is not None else 0, "status": str(getattr(job_return, "status", "")), **snapshot()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
