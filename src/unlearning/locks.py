"""Compute something once across processes: a lease on a lock file, refreshed by its holder, and waiters that poll.

Jobs of a sweep started together (a SLURM array, a multirun on the joblib launcher) all find
a shared artefact missing at first (a cache entry, a retrained reference model). So that it
is computed once, the first job takes a lock file beside it and the others poll until the
artefact appears. The lock is ``filelock.SoftFileLease``: a marker file created atomically
(also on NFS), which its holder's heartbeat thread refreshes every ``stale_s / 4`` seconds; a
claim left unrefreshed for ``stale_s`` seconds as a waiter measures it (its job died, even on
another node of a shared file system, where a plain ``FileLock``'s ``flock`` may not reach and
a dead holder cannot be told from a live one) is taken over. Waiters measure that on their own
monotonic clock, so a skewed file-server clock does not matter, and every job must use the same
``stale_s``. What filelock does not do is kept here: give up waiting after ``wait_s`` and
compute anyway (duplicate work, never a missing result), and stop waiting as soon as the
artefact exists.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import SoftFileLease, Timeout

log = logging.getLogger(__name__)


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
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lease = SoftFileLease(str(lock), lease_duration=stale_s, heartbeat_interval=stale_s / 4)
    deadline, announced = time.monotonic() + wait_s, False
    while True:
        try:
            lease.acquire(timeout=poll_s)
            break
        except Timeout:
            if not announced:
                announced = True
                log.info("waiting for another job to finish %s (lock %s)", what, lock)
            if ready():
                yield False
                return
            if time.monotonic() > deadline:
                log.warning("gave up waiting for %s after %.0f s; computing it here", what, wait_s)
                yield True
                return
    try:
        yield not ready()  # finished while we took the lock: nothing left to do
    finally:
        lease.release()
