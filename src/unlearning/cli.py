"""Shared shell of the entry points: clean one-paragraph errors and a non-zero exit."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from unlearning.errors import UserError
from unlearning.io import WriteFailed

log = logging.getLogger("unlearning")

EXIT_USER_ERROR = 2
#: The machine refused a write (disk full, quota, read-only): sysexits' EX_IOERR, apart from bad input.
EXIT_WRITE_FAILED = 74

# Library notices that say nothing about the user's run.
QUIET_WARNINGS = (
    r".*The `srun` command is available.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*have no `validation_step`.*",
    r".*but have no `val_dataloader`.*",
    r".*returned `None`, this fit will run with no optimizer.*",
    r".*does not have many workers.*",
    r".*LitLogger.*",
    # by design: every WandbLogger of a run (method curves, reference, final metrics) writes to one W&B run
    r".*There is a wandb run already in progress.*",
)


# Library log records that advertise rather than inform.
QUIET_LOG_RECORDS = re.compile(r"litlogger|LitLogger")


def quiet_library_warnings() -> None:
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def _informative(record: logging.LogRecord) -> bool:
    return not QUIET_LOG_RECORDS.search(record.getMessage())


def tidy_library_logging() -> None:
    """Print each Lightning notice once, and only notices about the run.

    The ``lightning`` package gives its logger a console handler of its own at import and
    still propagates to the root logger, which Hydra configures (console + the run's log
    file): every "GPU available" line would appear twice. Where the root logger has handlers
    we leave the notices to it, so they also reach the run's log file.
    """
    import lightning  # noqa: F401  (its import adds the handler we remove)

    if logging.getLogger().handlers:
        package = logging.getLogger("lightning")
        for handler in list(package.handlers):
            package.removeHandler(handler)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_informative)  # the same function twice is added once


def run_job(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``job(cfg)``; a :class:`UserError` (or a bad config value) becomes a message and exit 2, a write
    the machine refused (:class:`~unlearning.io.WriteFailed`: disk full...) a message and exit 74."""
    quiet_library_warnings()
    tidy_library_logging()
    try:
        apply_extras(cfg)
        return job(cfg)
    except UserError as error:
        fail(str(error))
    except OmegaConfBaseException as error:
        fail(f"invalid configuration: {str(error).splitlines()[0]}")
    except WriteFailed as error:
        fail(write_failure_message(error), status=EXIT_WRITE_FAILED)


def write_failure_message(error: WriteFailed) -> str:
    """What failed, where, and what to do, for a write the operating system refused.

    Why a message and not the traceback: the failure is the machine's, not the code's, and the
    traceback (through safetensors and Hydra) names a hidden temporary file, not what the run
    was publishing. Every publishing write is atomic (:mod:`unlearning.io`), so the message can
    promise that nothing half-written was left behind.
    """
    target, code = error.target, error.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    where = target.parent
    if code in (errno.ENOSPC, errno.EDQUOT):
        advice = (f"Free space on the file system that holds {where} (see `df -h {where}`), or write elsewhere "
                  "with paths.root_dir=PATH (or UNLEARNING_ROOT) or hydra.run.dir=PATH")
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = (f"Make {where} writable, or write elsewhere with paths.root_dir=PATH (or UNLEARNING_ROOT) "
                  "or hydra.run.dir=PATH")
    else:
        advice = f"Check the file system that holds {where}"
    return (f"could not write {target}: {error.strerror}{f' ({name})' if name else ''}. Nothing half-written "
            f"was left there: it is written under a temporary name and renamed into place only when complete, and "
            f"the temporary copy was removed. {advice}, then run the same command again (a run whose "
            "results.json is missing counts as unfinished; resume=true skips the finished ones of a sweep).")


def apply_extras(cfg: DictConfig) -> None:
    """``cfg.extras`` (conf/extras/, as in lightning-hydra-template): silence warnings, print the config."""
    from omegaconf import OmegaConf

    from unlearning.distributed import is_rank_zero

    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config") and is_rank_zero():
        from rich.console import Console
        from rich.syntax import Syntax

        Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


def fail(message: str, log_it: bool = True, status: int = EXIT_USER_ERROR) -> None:
    """Print ``message`` as one paragraph on stderr (and to the run's log) and exit with ``status`` (2).

    The message goes to the log only where logging is configured (Hydra's job log): without
    a handler, Python's last-resort handler would print it on stderr a second time.
    """
    text = textwrap.fill(f"error: {message}", width=100, break_long_words=False, break_on_hyphens=False)
    if log_it and log.hasHandlers():
        log.error(message)
    print(text, file=sys.stderr, flush=True)
    sys.exit(status)


def preflight(config_dir: str | Path, config_name: str, argv: Sequence[str]) -> None:
    """Catch, before Hydra starts, the mistakes Hydra reports as several paragraphs or a traceback.

    An unknown config group choice (``method=nope``) or setting (``method.alhpa=3``) becomes
    one paragraph listing the valid ones, and an output folder that cannot be written
    (``hydra.run.dir`` under a file, on a read-only file system, without permission) is
    refused before anything runs; all exit with status 2. Anything this check cannot parse
    is left to Hydra, which reports it itself.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    config_dir = Path(config_dir)
    args, _unknown = get_args_parser().parse_known_args(list(argv))
    if args.config_path or args.config_dir or args.config_name or args.experimental_rerun:
        return  # another config tree: Hydra's own checks apply
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # a syntax error: Hydra explains it in one line
        return
    problem = unknown_group_choice(config_dir, overrides)
    if problem is None and not (args.help or args.hydra_help or args.info or args.shell_completion or args.cfg):
        problem = compose_problem(config_dir, config_name, overrides, args.multirun)
    if problem:
        fail(problem)


def group_options(config_dir: Path, group: str) -> list[str]:
    folder = config_dir / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def unknown_group_choice(config_dir: Path, overrides: Sequence[Any]) -> str | None:
    """A message for the first ``group=value`` whose ``conf/<group>/<value>.yaml`` does not exist."""
    from hydra.core.override_parser.types import ValueType

    for override in overrides:
        group = override.key_or_group
        if override.is_delete() or group.startswith("hydra") or not (config_dir / group).is_dir():
            continue
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            continue
        if override.is_discrete_sweep():
            values = list(override.sweep_string_iterator())
        elif override.is_sweep_override():
            continue
        else:
            value = override.value()
            values = [] if value is None else [str(value)]
        for value in values:
            if not (config_dir / group / f"{value}.yaml").is_file():
                options = group_options(config_dir, group)
                return (f"unknown {group} {value!r}: valid choices for {group}= are {', '.join(options)} "
                        f"(the files in {config_dir.name}/{group}/).")
    return None


def compose_problem(config_dir: Path, config_name: str, overrides: Sequence[Any], multirun: bool) -> str | None:
    """Compose the config as Hydra will; explain an unknown setting or an unwritable output folder."""
    from hydra import compose, initialize_config_dir

    def composed(lines: list[str]):
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            return compose(config_name=config_name, overrides=lines, return_hydra_config=True)

    plain = [o for o in overrides if not o.is_sweep_override()]
    try:
        cfg = composed([o.input_line for o in plain])
        folder = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    except Exception:
        return unknown_setting(composed, config_dir, plain)
    problem = folder_write_problem(folder)
    if problem is None:
        return None
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    return (f"cannot write the output folder {folder}: {problem}. Choose a writable place with {key}=PATH "
            "or paths.root_dir=PATH (or the UNLEARNING_ROOT environment variable).")


def unknown_setting(composed: Callable[[list[str]], Any], config_dir: Path, plain: Sequence[Any]) -> str | None:
    """A message for the first ``a.b.c=value`` whose key does not exist (Hydra says only 'not in struct')."""
    from omegaconf import OmegaConf

    choices = [o.input_line for o in plain if (config_dir / o.key_or_group).is_dir() or o.is_hydra_override()]
    try:
        base = composed(choices)
    except Exception:
        return None
    for override in plain:
        key = override.key_or_group
        if override.is_add() or override.is_force_add() or override.is_delete() or "." not in key:
            continue
        if key.startswith("hydra.") or (config_dir / key).is_dir():
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent, default=None)
        if node is None or not OmegaConf.is_dict(node) or leaf in node:
            continue
        keys = ", ".join(str(k) for k in node.keys())
        return (f"unknown setting {key}: {parent} has {keys}. Check the spelling, or add a new key "
                f"on purpose with +{key}=VALUE.")
    return None


def folder_write_problem(folder: str | Path) -> str | None:
    """Why ``folder`` could not be created and written, or None; creates nothing that stays."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing} is not writable ({error.strerror or error})"
    return None
