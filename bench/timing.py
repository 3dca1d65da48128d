"""Wall and process-CPU clocks, progress notes and ratios."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator

import torch


class Clock:
    """Wall and process-CPU seconds of a block; synchronises the GPU at both ends."""

    def __init__(self, device: torch.device):
        self.device = device

    @contextlib.contextmanager
    def __call__(self, into: dict[str, float], name: str) -> Iterator[None]:
        self._sync()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self._sync()
        into[f"{name}_s"] = time.perf_counter() - wall
        into[f"{name}_cpu_s"] = time.process_time() - cpu

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def note(message: str) -> None:
    """Progress on stderr: a CPU run takes a while."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan
