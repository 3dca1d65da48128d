"""A cache of named tensors (importances, logits) in memory and on disk, keyed by content digests.

SSD's two importance passes cost as much as an epoch of training; the dampening that
follows costs nothing. A sweep over alpha and lambda, or over seeds of the evaluation,
therefore only needs each importance once. This module keeps them:

* in memory, for the runs of one process (a Hydra multirun on the basic launcher runs its
  jobs one after another in one process), bounded by ``memory_bytes`` (least recently used
  entries are dropped first);
* on disk, for other processes and SLURM jobs, as ``<kind>-<key>.safetensors`` files under
  one directory, bounded by ``disk_bytes`` (least recently used files are deleted first).

An entry's key is the digest of a description of *all* its inputs (see
:mod:`unlearning.fingerprint`); the description itself is stored in the file and compared
on load, and so is a digest of the tensor bytes. A file whose description differs, that is
truncated, corrupt or unreadable is ignored (and overwritten by the recomputed entry).
Files are written atomically (temporary file, then rename), so concurrent jobs computing
the same entry never see half a file. safetensors holds only tensors and a string
dictionary: loading an entry cannot execute code, unlike a pickle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from unlearning.fingerprint import cache_key, digest_tensors
from unlearning.io import atomic_write
from unlearning.locks import compute_once

log = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]

#: Bump when the computation behind an entry changes, so that old entries stop matching.
FORMAT_VERSION = 1
_META_PARTS, _META_DIGEST, _META_VERSION = "unlearning.parts", "unlearning.tensors_digest", "unlearning.version"
_STALE_TMP_S = 3600


class Agreement(Protocol):
    """How the processes of one run agree on rank 0's cache lookup (e.g. over a Lightning strategy)."""

    def decide(self, hit: bool, usable: bool) -> tuple[bool, bool]: ...

    def share(self, found: Tensors | None) -> Tensors: ...


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    writes: int = 0
    waits: int = 0
    rejected: int = 0
    evicted: int = 0
    load_s: float = 0.0
    write_s: float = 0.0
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "log"}


class TensorCache:
    """In-memory plus on-disk store of ``dict[str, Tensor]`` entries (CPU tensors).

    ``directory=None`` keeps entries in memory only; ``write=False`` reads the disk but
    never writes it (non-zero ranks of a distributed run). Tensors handed out are copies:
    changing them in place does not change the cache.
    """

    def __init__(self, directory: str | Path | None, memory_bytes: int = 2 << 30,
                 disk_bytes: int | None = 20 << 30, write: bool = True, wait_s: float = 1200.0,
                 stale_s: float = 60.0, poll_s: float = 1.0):
        self.directory = Path(directory).expanduser() if directory is not None else None
        self.memory_bytes, self.disk_bytes, self.write = int(memory_bytes), disk_bytes, write
        # Waiting stays below the 30 min default timeout of DDP collectives: other ranks wait meanwhile.
        self.wait_s, self.stale_s, self.poll_s = float(wait_s), float(stale_s), float(poll_s)
        self._memory: OrderedDict[str, Tensors] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    # ---------------------------------------------------------------- keys
    @staticmethod
    def key(parts: Mapping[str, Any]) -> str:
        return f"{parts.get('kind', 'entry')}-{cache_key(parts)}"

    def path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.safetensors"

    # ---------------------------------------------------------------- read
    def get(self, parts: Mapping[str, Any]) -> Tensors | None:
        """The entry described by ``parts``, from memory or disk; None when absent or unusable."""
        key = self.key(parts)
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                self.stats.memory_hits += 1
                return {name: value.clone() for name, value in entry.items()}
        entry = self._load(key, parts)
        if entry is None:
            self.stats.misses += 1
            return None
        self.stats.disk_hits += 1
        self._remember(key, entry)
        return {name: value.clone() for name, value in entry.items()}

    def _load(self, key: str, parts: Mapping[str, Any]) -> Tensors | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        start = time.perf_counter()
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                meta = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except Exception as error:  # safetensors raises its own error types for truncated/corrupt files
            return self._reject(path, f"unreadable ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
        if meta.get(_META_VERSION) != str(FORMAT_VERSION):
            return self._reject(path, "written by another cache format")
        if meta.get(_META_PARTS) != _canonical(parts):
            return self._reject(path, "describes other inputs than this run's")
        if meta.get(_META_DIGEST) != digest_tensors(sorted(tensors.items())):
            return self._reject(path, "tensor bytes do not match their digest (corrupt)")
        try:
            os.utime(path)  # least-recently-used order for eviction
        except OSError:
            pass
        self.stats.load_s += time.perf_counter() - start
        return tensors

    def _reject(self, path: Path, why: str) -> None:
        self.stats.rejected += 1
        message = f"ignoring cache entry {path.name}: {why}; recomputing it"
        self.stats.log.append(message)
        log.warning(message)
        return None

    # ---------------------------------------------------------------- write
    def put(self, parts: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
        """Store CPU copies of ``tensors`` under ``parts`` in memory and (if allowed) on disk."""
        key = self.key(parts)
        entry = {name: value.detach().to("cpu", copy=True).contiguous() for name, value in tensors.items()}
        self._remember(key, entry)
        path = self.path(key)
        if path is None or not self.write:
            return
        start = time.perf_counter()
        meta = {_META_VERSION: str(FORMAT_VERSION), _META_PARTS: _canonical(parts),
                _META_DIGEST: digest_tensors(sorted(entry.items()))}
        try:
            atomic_write(path, lambda tmp: save_file(entry, str(tmp), metadata=meta))
        except OSError as error:  # a full or read-only disk must not fail the run
            log.warning("could not write cache entry %s: %s", path, error)
            return
        self.stats.writes += 1
        self.stats.write_s += time.perf_counter() - start
        self._evict_disk()

    def get_or_compute(self, parts: Mapping[str, Any], compute: Callable[[], Mapping[str, torch.Tensor]]) -> Tensors:
        """The cached entry for ``parts``, or ``compute()`` stored and returned (see :meth:`claim`)."""
        with self.claim(parts) as found:
            if found is not None:
                return found
            value = dict(compute())
            self.put(parts, value)
            return value

    def get_or_compute_agreed(self, parts: Mapping[str, Any] | None, compute: Callable[[], Mapping[str, torch.Tensor]],
                              agreement: Agreement | None = None) -> tuple[Tensors, str]:
        """:meth:`get_or_compute` for several processes where only rank 0 looks the entry up.

        ``parts`` is given on rank 0 (None elsewhere, or when the data has no digest);
        ``agreement`` (None in a single process) makes every rank follow rank 0's hit or miss
        and, on a hit, hands rank 0's tensors to all, so every rank continues with the same
        numbers even if another job is writing the entry meanwhile. On a miss every rank
        computes (the computation itself is spread over them) and rank 0 writes. Returns the
        tensors and what happened: "hit", "computed" or "computed (data cannot be fingerprinted)".
        """
        claim = self.claim(parts) if parts is not None else contextlib.nullcontext(None)
        with claim as found:  # rank 0 may wait here for another job computing the same entry
            usable = parts is not None
            if agreement is not None:
                hit, usable = agreement.decide(found is not None, usable)
                if hit:
                    found = agreement.share(found)
            if found is not None:
                return found, "hit"
            value = dict(compute())
            if parts is not None:
                self.put(parts, value)
            return value, "computed" if usable else "computed (data cannot be fingerprinted)"

    @contextlib.contextmanager
    def claim(self, parts: Mapping[str, Any]) -> Iterator[Tensors | None]:
        """Yield the entry for ``parts``, or None and the right to compute it while the block runs.

        Jobs of a sweep started together all miss at first; so that they compute each entry
        once, the first takes a lock file beside the entry and the others wait, up to
        ``wait_s`` seconds, for the entry to appear (see :func:`unlearning.locks.compute_once`:
        a dead holder's lock is taken over; when the wait runs out the waiter computes the
        entry itself: duplicate work, never a wrong or missing result).
        """
        found = self.get(parts)
        path = self.path(self.key(parts))
        if found is not None or path is None or not self.write:
            yield found
            return
        loaded: list[Tensors] = []

        def ready() -> bool:
            if path.is_file() and (entry := self.get(parts)) is not None:
                loaded.append(entry)
                return True
            return False

        with compute_once(path.with_name(path.name + ".lock"), ready, self.wait_s, self.stale_s, self.poll_s,
                          what=f"cache entry {path.name}") as must_compute:
            if not must_compute:
                self.stats.waits += 1
                yield loaded[-1]
            else:
                yield None

    def _remember(self, key: str, entry: Tensors) -> None:
        size = _nbytes(entry)
        if size > self.memory_bytes:
            return
        with self._lock:
            self._memory[key] = entry
            self._memory.move_to_end(key)
            while sum(_nbytes(e) for e in self._memory.values()) > self.memory_bytes:
                self._memory.popitem(last=False)

    def _evict_disk(self) -> None:
        if self.directory is None or self.disk_bytes is None:
            return
        entries, now = [], time.time()
        for path in self.directory.iterdir():
            try:
                stat = path.stat()
            except OSError:
                continue
            if path.name.endswith((".tmp", ".lock")) and now - stat.st_mtime > _STALE_TMP_S:
                path.unlink(missing_ok=True)  # left behind by a killed writer
            elif path.suffix == ".safetensors":
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.disk_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            self.stats.evicted += 1


def _canonical(parts: Mapping[str, Any]) -> str:
    return json.dumps(dict(parts), sort_keys=True, separators=(",", ":"), default=str)


def _nbytes(entry: Mapping[str, torch.Tensor]) -> int:
    return sum(value.numel() * value.element_size() for value in entry.values())


_SHARED: dict[tuple[str, bool], TensorCache] = {}


def shared_cache(directory: str | Path | None, write: bool = True, **options: Any) -> TensorCache:
    """The process-wide cache for ``directory``: runs of one multirun process share its memory."""
    name = str(Path(directory).expanduser().resolve()) if directory is not None else ""
    cache = _SHARED.get((name, write))
    if cache is None:
        cache = _SHARED[(name, write)] = TensorCache(directory, write=write, **options)
    for option, value in options.items():
        setattr(cache, option, value)
    return cache
