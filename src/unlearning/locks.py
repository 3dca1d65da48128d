"""Compute something once across processes: a lock file with a heartbeat, and waiters that poll.

Jobs of a sweep started together (a SLURM array, a multirun on the joblib launcher) all find
a shared artefact missing at first (a cache entry, a retrained reference model). So that it
is computed once, the first job creates a lock file beside it (``O_EXCL``: atomic, also on
NFS v3+) and the others poll until the artefact appears. The holder touches its lock every
few seconds; a lock left untouched for ``stale_s`` seconds (its job died, even on another
node of a shared file system) is taken over. ``filelock`` cannot tell a dead holder on
another node from a live one, which is why this small module exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def try_create(lock: Path) -> bool:
    """Create ``lock`` if it does not exist (atomically); False when another process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.uname().nodename} {os.getpid()}\n")
    return True


def age(path: Path) -> float:
    """Seconds since ``path`` was last touched (0 when it just vanished: the next attempt takes it)."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


class Heartbeat(threading.Thread):
    """Touches a lock file every ``every`` seconds while its holder computes."""

    def __init__(self, lock: Path, every: float):
        super().__init__(daemon=True)
        self.lock, self.every, self.done = lock, every, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            with contextlib.suppress(OSError):
                os.utime(self.lock)

    def stop(self) -> None:
        self.done.set()
        self.join()


@contextlib.contextmanager
def compute_once(lock: Path, ready: Callable[[], bool], wait_s: float, stale_s: float = 60.0,
                 poll_s: float = 1.0, what: str = "it") -> Iterator[bool]:
    """Yield True with the right (and duty) to compute, or False once ``ready()`` holds.

    ``ready`` says whether the artefact exists (another job finished it). When the wait of
    ``wait_s`` seconds runs out the caller computes it itself (True): duplicate work, never a
    missing result. The lock is released when the block ends, also on error.
    """
    if ready():
        yield False
        return
    deadline, announced = time.monotonic() + wait_s, False
    while not try_create(lock):
        if not announced:
            announced = True
            log.info("waiting for another job to finish %s (lock %s)", what, lock)
        if age(lock) > stale_s:
            lock.unlink(missing_ok=True)  # its holder stopped touching it: take over
            continue
        if time.monotonic() > deadline:
            log.warning("gave up waiting for %s after %.0f s; computing it here", what, wait_s)
            yield True
            return
        time.sleep(poll_s)
        if ready():
            yield False
            return
    heartbeat = Heartbeat(lock, stale_s / 4)
    heartbeat.start()
    try:
        yield not ready()  # finished while we took the lock: nothing left to do
    finally:
        heartbeat.stop()
        lock.unlink(missing_ok=True)
