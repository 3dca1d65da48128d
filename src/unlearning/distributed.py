"""One way for jobs to ask about the other processes of a multi-process (DDP) run.

Lightning keeps the global rank of this process in ``rank_zero_only.rank``: read from the
launcher's environment (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``) at import, set by the
DDP strategy when it sets up, and by :mod:`unlearning.jobs.launched` for submitit's local
tasks. Asking it, rather than a Trainer (``trainer.is_global_zero``), works before any
Trainer exists and after it is gone, so every job and callback gives the same answer.
"""

from __future__ import annotations

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only


def is_rank_zero() -> bool:
    """True in the process that writes the run's files (the only process of a single-process run)."""
    return rank_zero_only.rank == 0


def wait_for_rank_zero() -> None:
    """A barrier across the DDP processes, when there are several; a no-op otherwise.

    Under DDP only rank 0 writes (a trained model, a record): the others wait here before reading it.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
