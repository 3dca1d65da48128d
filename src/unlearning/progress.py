"""Progress bars for long passes that are not Lightning loops (importances, searches, evaluation).

One place decides whether a bar is shown: on rank 0 only (one bar per run, not one per
process) and only when the run's progress bar is on (``trainer.enable_progress_bar``;
tests and sweeps turn it off). Bars go to stderr and vanish when done, so the printed
results stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def trainer_shows_progress(trainer: Any) -> bool:
    """Whether ``trainer`` shows progress: its progress bar is on and this is rank 0."""
    from unlearning.distributed import is_rank_zero  # Lightning's rank; callers hold a Trainer anyway

    return getattr(trainer, "progress_bar_callback", None) is not None and is_rank_zero()


def progress(iterable: Iterable | None = None, description: str = "", enabled: bool = True,
             total: int | None = None, unit: str = "batch") -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``), silent when not ``enabled``."""
    return tqdm(iterable, desc=description, total=total, unit=unit, leave=False, disable=not enabled,
                dynamic_ncols=True)
