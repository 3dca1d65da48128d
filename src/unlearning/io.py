"""Atomic file and folder writes, so that a run killed at any moment leaves the complete thing or none.

A file is written to a hidden temporary name beside its target, flushed to disk and renamed
into place; a folder (a checkpoint: weights plus metadata) is filled under a hidden
temporary name and renamed into place as a whole, so weights and metadata can never come
from two different saves. A killed writer leaves at most a hidden ``.<name>.*.tmp`` entry,
which no reader looks at.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


class WriteFailed(OSError):
    """The operating system refused to write ``target`` (disk full, quota, read-only, permissions).

    An :class:`OSError` (same ``errno`` and ``strerror``; ``filename`` is the target) so that code
    which tolerates a failed write (the importance cache) still catches it, but one that names
    the file or folder that was being *published*, not the hidden temporary name the error
    happened on, so that the entry point can say what failed and where
    (:func:`unlearning.cli.run_job`).
    """

    def __init__(self, target: str | Path, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(target))
        self.target = Path(target)


#: safetensors reports a failed write as its own exception type, with the OS error in its words:
#: "Error while serializing: I/O error: No space left on device (os error 28) at path ...".
_SAFETENSORS_IO = re.compile(r"I/O error: (?P<words>.*?) \(os error (?P<code>\d+)\)")


def os_error_of(error: BaseException) -> OSError | None:
    """The operating-system error behind ``error``: itself, or one that safetensors wrapped; else None."""
    if isinstance(error, OSError):
        return error
    if type(error).__name__ == "SafetensorError":
        match = _SAFETENSORS_IO.search(str(error))
        if match:
            code = int(match["code"])
            return OSError(code, os.strerror(code) if code in errno.errorcode else match["words"])
    return None


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(directory: bool = False) -> int:
    """The permissions a plain ``open()``/``mkdir()`` would give; temporary files start at 0600/0700."""
    return (0o777 if directory else 0o666) & ~current_umask()


def fsync_directory(directory: str | Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename itself is still atomic
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX file systems, so readers never see a half-written file.
    An operating-system error (a full disk; also the one safetensors wraps) removes the
    temporary file and is raised as :class:`WriteFailed` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteFailed(path, error) from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, usual_mode())  # readable like any other file, not 0600 (mkstemp's, safetensors')
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        raise _named(path, error) from error
    fsync_directory(path.parent)
    return path


def _named(target: Path, error: BaseException) -> BaseException:
    """``error`` as a :class:`WriteFailed` naming ``target`` when the operating system caused it."""
    cause = os_error_of(error)
    if cause is None or isinstance(error, WriteFailed):
        return error
    return WriteFailed(target, cause)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_directory(directory: str | Path, fill: Callable[[Path], None], replace: bool = True) -> Path:
    """Call ``fill(staging)`` on an empty hidden folder beside ``directory``, then publish it as ``directory``.

    A missing target is created by one atomic rename. An existing target is first renamed
    to a hidden ``.<name>.old-*`` folder, the new one renamed into place and the old one
    deleted; a writer killed between those two renames leaves no ``directory`` (and the
    previous content intact in the hidden folder), never a mix of old and new files.
    With ``replace=False`` an existing ``directory`` is kept and ``FileExistsError`` raised,
    even when another process published it a moment ago.
    """
    directory = Path(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    except OSError as error:
        raise WriteFailed(directory, error) from error
    try:
        os.chmod(staging, usual_mode(directory=True))
        fill(staging)
        for entry in staging.iterdir():
            if entry.is_file():
                os.chmod(entry, usual_mode())
                fsync_file(entry)
        fsync_directory(staging)
        _publish(staging, directory, replace)
    except FileExistsError:  # replace=False and the target exists: the caller's decision, not a failure
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise _named(directory, error) from error
    fsync_directory(directory.parent)
    return directory


def _publish(staging: Path, directory: Path, replace: bool) -> None:
    try:
        os.rename(staging, directory)  # atomic; also replaces an empty folder
        return
    except OSError:
        if not directory.exists():
            raise
    if not replace:
        raise FileExistsError(f"{directory} exists and is kept")
    retired = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}.tmp")
    os.rename(directory, retired)
    os.rename(staging, directory)
    shutil.rmtree(retired, ignore_errors=True)
