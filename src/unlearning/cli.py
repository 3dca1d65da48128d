"""Shared shell of the entry points: clean one-paragraph errors and a non-zero exit."""

from __future__ import annotations

import logging
import sys
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from unlearning.errors import UserError

log = logging.getLogger("unlearning")

EXIT_USER_ERROR = 2

# Library notices that say nothing about the user's run.
QUIET_WARNINGS = (
    r".*The `srun` command is available.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*have no `validation_step`.*",
    r".*returned `None`, this fit will run with no optimizer.*",
    r".*does not have many workers.*",
    r".*LitLogger.*",
)


def quiet_library_warnings() -> None:
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def run_job(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``job(cfg)``; a :class:`UserError` (or a bad config value) becomes a message and exit 2."""
    quiet_library_warnings()
    try:
        return job(cfg)
    except UserError as error:
        fail(str(error))
    except OmegaConfBaseException as error:
        fail(f"invalid configuration: {str(error).splitlines()[0]}")


def fail(message: str) -> None:
    text = textwrap.fill(f"error: {message}", width=100, break_long_words=False, break_on_hyphens=False)
    log.error(message)
    print(text, file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)
