"""A write the machine refuses (no space left on the device) while a run publishes its model or record.

The run must end with one paragraph that says what failed, where and what to do, with a
non-zero exit (74, apart from bad input's 2), and leave nothing half-written: no model folder,
no results.json, no hidden temporary entry. The disk filling up is simulated where the
operating system would report it (the weights' writer, the record's flush to disk); the
error that safetensors wraps is a real one.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import save_file
from torch import nn

import unlearning.io as io
import unlearning.models.checkpoints as checkpoints
from tests.conftest import QUIET, compose_config
from unlearning.cli import EXIT_WRITE_FAILED, run_job
from unlearning.io import WriteFailed, atomic_write_json, os_error_of
from unlearning.models.checkpoints import save_checkpoint


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_full_disk_while_writing_a_record_names_it_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"status": "complete", "n": 1})
    monkeypatch.setattr(io, "fsync_file", disk_full)
    with pytest.raises(WriteFailed) as failure:
        atomic_write_json(target, {"status": "complete", "n": 2})
    assert failure.value.errno == errno.ENOSPC and failure.value.target == target
    assert isinstance(failure.value, OSError), "code that tolerates a failed write (the cache) still catches it"
    assert json.loads(target.read_text())["n"] == 1 and entries(tmp_path) == ["results.json"]


def test_a_full_disk_while_saving_weights_leaves_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "save_file", disk_full)
    with pytest.raises(WriteFailed) as failure:
        save_checkpoint(tmp_path / "model", nn.Linear(3, 2), {"seed": 0})
    assert failure.value.target == tmp_path / "model" and failure.value.strerror == "No space left on device"
    assert entries(tmp_path) == [], "neither the folder nor its hidden staging copy is left"


def test_safetensors_own_io_error_is_read_as_the_os_error_it_wraps(tmp_path):
    """safetensors raises its own SafetensorError on a failed write, with the OS error only in its words."""
    with pytest.raises(Exception) as raised:
        save_file({"w": torch.zeros(3)}, str(tmp_path / "missing" / "w.safetensors"))
    assert type(raised.value).__name__ == "SafetensorError"
    cause = os_error_of(raised.value)
    assert isinstance(cause, OSError) and cause.errno == errno.ENOENT
    assert os_error_of(ValueError("I/O error: nothing (os error 28)")) is None, "only safetensors' type is read"


@pytest.mark.parametrize("failing", ["model", "record"])
def test_unlearn_on_a_full_disk_says_what_failed_and_exits_74(trained_root, tmp_path, monkeypatch, capsys, failing):
    """The whole run, through the entry points' shell: the model's save or the record's write fails."""
    from unlearning.jobs.unlearn import unlearn

    if failing == "model":
        monkeypatch.setattr(checkpoints, "save_file", disk_full)
    else:
        real_fsync = io.fsync_file
        monkeypatch.setattr(io, "fsync_file", lambda path: disk_full() if Path(path).name.startswith(
            ".results.json.") else real_fsync(path))
    cfg = compose_config("unlearn", [f"paths.root_dir={trained_root}", "method=baseline", *QUIET,
                                     "evaluation.strong_mia=false", "evaluation.probe=false"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        run_job(lambda c: unlearn(c, run_dir), cfg)
    assert exit_.value.code == EXIT_WRITE_FAILED
    message = " ".join(capsys.readouterr().err.split())
    target = run_dir / ("unlearned" if failing == "model" else "results.json")
    assert f"could not write {target}: No space left on device (ENOSPC)" in message
    assert "Nothing half-written was left there" in message and f"df -h {run_dir}" in message
    assert "paths.root_dir=PATH" in message and "Traceback" not in message
    assert not (run_dir / "results.json").exists(), "no record: the run counts as unfinished"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert (run_dir / "unlearned").is_dir() == (failing == "record"), "a model is there whole or not at all"


def test_an_existing_checkpoint_kept_on_purpose_is_not_a_machine_failure(tmp_path):
    """``replace=False`` refuses an existing folder with FileExistsError, which its callers handle (train.py)."""
    save_checkpoint(tmp_path / "model", nn.Linear(3, 2), {"seed": 0})
    with pytest.raises(FileExistsError) as refused:
        save_checkpoint(tmp_path / "model", nn.Linear(3, 2), {"seed": 1}, replace=False)
    assert not isinstance(refused.value, WriteFailed)
    assert json.loads((tmp_path / "model" / "metadata.json").read_text())["seed"] == 0
    assert entries(tmp_path) == ["model"]
