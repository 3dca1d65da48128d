"""One run, one folder: a run writes only into its own folder, and no two runs share one.

Hydra names run folders by the second, so two ``unlearn.py`` started together (a shell loop
with ``&``), or a repeated ``hydra.run.dir=X``, would otherwise write into the same folder
and overwrite each other's ``results.json`` and checkpoints. :func:`claim_run_folder`
refuses a folder that another live process is using or that already holds a finished run.

The claim is not a ``filelock`` lock on purpose: a lock only tells "held or not" and is waited
for, while a claim is refused at once with a message naming the other run, and it is a record
that ``python -m unlearning.report`` reads back (``.claim.json``: pid, host, start time) to tell
a running run from a killed one in a sweep's list of missing runs. It is one atomic ``os.link``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from unlearning.errors import UserError
from unlearning.io import atomic_write_json

CLAIM_FILE = ".claim.json"


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (root ignores chmod, so try it)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write the run folder {folder} ({error.strerror or error}). Choose a writable "
                        "place with hydra.run.dir=PATH or paths.root_dir=PATH (or UNLEARNING_ROOT).") from None
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(folder: Path) -> dict | None:
    """The live process on this host that holds ``folder``, if any (a killed run's claim is stale)."""
    try:
        claim = json.loads((folder / CLAIM_FILE).read_text())
        pid, host = int(claim["pid"]), str(claim["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname() and pid != os.getpid() and _alive(pid):
        return claim
    return None


@contextlib.contextmanager
def claim_run_folder(folder: str | Path, finished: bool = False, what: str = "run") -> Iterator[Path]:
    """Hold ``folder`` for this process while the body runs; refuse it when it is not free.

    ``finished`` says the folder already holds a complete run (its ``results.json``): writing
    there again would replace that record, so it is refused too. Only rank 0 of a
    multi-process job should claim; the other ranks share rank 0's folder.
    """
    folder = check_writable(folder)
    if finished:
        raise UserError(f"the run folder {folder} already holds a finished {what}; a new run would overwrite "
                        "its results. Give this run its own folder (leave hydra.run.dir at its default or set "
                        "another), or set resume=true to skip runs that are complete.")
    claim_path = folder / CLAIM_FILE
    claim = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    staged = folder / f".claim-{os.getpid()}.tmp"
    staged.write_text(json.dumps(claim))
    try:
        os.link(staged, claim_path)  # atomic: creates the claim, complete, or fails if one exists
    except FileExistsError:
        holder = _holder(folder)
        if holder is not None:
            raise UserError(f"the run folder {folder} is in use by another {what} (pid {holder['pid']}, started "
                            f"{holder.get('started')}); two runs in one folder would overwrite each other's "
                            "results. Give each run its own hydra.run.dir, or wait for that one to finish."
                            ) from None
        atomic_write_json(claim_path, claim)  # a killed run's stale claim: take the folder over
    except OSError:  # a file system without hard links: claim without the exclusivity guarantee
        os.replace(staged, claim_path)
    finally:
        staged.unlink(missing_ok=True)
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(claim_path.read_text()).get("pid") == os.getpid():
                claim_path.unlink()
