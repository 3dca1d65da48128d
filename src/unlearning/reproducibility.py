"""Seeds and determinism switches, applied once at the start of a job.

On the CPU, a fixed ``seed`` already gives bit-identical weights and metrics run after
run (same machine, same thread count). On GPUs, cuDNN autotuning, cuBLAS workspaces and
atomic-add kernels vary between runs; ``trainer.deterministic=true`` switches them all off
here, for the whole process, so that the passes made outside a Lightning Trainer
(evaluation, importances) are covered as well as the ones inside it. See docs/reliability.md.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch

from unlearning.errors import UserError

#: cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2); set before the first cuBLAS call.
CUBLAS_WORKSPACE = ":4096:8"


def seed_of(value: Any) -> int:
    """The configured ``seed`` as an int, or a clear error."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number != number or not number.is_integer() or not 0 <= number < 2**32:
        raise UserError(f"seed must be a whole number between 0 and {2**32 - 1}, got {value!r}.")
    return int(number)


def deterministic_mode(value: Any) -> bool | str:
    """``trainer.deterministic``: true, false or "warn" (report, rather than refuse, non-deterministic ops)."""
    if value in (None, False, True, "warn"):
        return bool(value) if value != "warn" else "warn"
    raise UserError(f"trainer.deterministic must be true, false or warn, got {value!r}.")


def configure_determinism(mode: bool | str) -> None:
    """Switch PyTorch's deterministic algorithms, cuDNN and cuBLAS settings on, or back off.

    The same switches Lightning's ``Trainer(deterministic=...)`` sets, but applied when the
    job starts: before the first CUDA call (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` once)
    and for the passes made outside a Trainer. ``False`` undoes an earlier run's ``True``
    in the same process (a multirun), as a Trainer would.
    """
    if mode:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(bool(mode), warn_only=mode == "warn")
    torch.backends.cudnn.deterministic = bool(mode)
    if mode:
        torch.backends.cudnn.benchmark = False


def start_job(seed: Any, deterministic: Any = False) -> int:
    """Seed every generator (and DataLoader workers) with ``seed`` and apply ``trainer.deterministic``;
    returns the seed (both values as configured, checked here)."""
    seed = seed_of(seed)
    configure_determinism(deterministic_mode(deterministic))
    L.seed_everything(seed, workers=True, verbose=False)
    return seed
