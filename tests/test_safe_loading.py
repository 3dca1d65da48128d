"""Checkpoints crafted to run code when unpickled are refused, and the code never runs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.reliability_support import TINY, files_under, make_tiny_root, result_like, tiny_checkpoint
from unlearning.errors import UserError
from unlearning.models.checkpoints import load_checkpoint


class RunsCode:
    """Unpickling this object calls ``os.system``: the classic pickle payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_payload(path: Path, marker: Path, kind: str) -> Path:
    weights = {"conv.weight": torch.zeros(2, 2)}
    if kind == "zip":  # torch.save's default zip format, payload beside real tensors
        torch.save({**weights, "extra": RunsCode(marker)}, path)
    elif kind == "legacy":  # torch's pre-1.6 format
        torch.save({**weights, "extra": RunsCode(marker)}, path, _use_new_zipfile_serialization=False)
    elif kind == "lightning":  # a Lightning-style .ckpt whose hyper_parameters carry the payload
        torch.save({"state_dict": weights, "hyper_parameters": {"x": RunsCode(marker)}}, path)
    elif kind == "plain_pickle":  # not torch at all: pickle protocol 2 bytes
        path.write_bytes(pickle.dumps({"state_dict": weights, "x": RunsCode(marker)}, protocol=2))
    return path


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    """Guards the other tests: unpickling the payload without protection does create the marker."""
    marker = tmp_path / "MARKER"
    path = write_payload(tmp_path / "model.pt", marker, "zip")
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind,suffix", [("zip", ".pt"), ("legacy", ".pt"), ("lightning", ".ckpt"),
                                         ("plain_pickle", ".pt"), ("zip", ".safetensors")])
def test_code_carrying_checkpoint_is_refused(tmp_path, kind, suffix):
    marker = tmp_path / "MARKER"
    path = write_payload(tmp_path / f"model{suffix}", marker, kind)
    (tmp_path / "metadata.json").write_text(json.dumps({"dataset": "digits"}))
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    message = str(error.value)
    if suffix == ".safetensors":  # safetensors never unpickles: a pickle there is just not safetensors
        assert "truncated or corrupt" in message
    else:
        assert "refused" in message and "arbitrary code" in message and "refused to build" in message
    assert "\n" not in message
    assert not marker.exists(), "unpickling ran the payload"


@pytest.mark.slow  # the default suite runs the same case as a subprocess in tests/test_bad_input.py
def test_unlearn_cli_refuses_code_carrying_checkpoint(tmp_path):
    """unlearn.py checkpoint=evil.ckpt: exit 2, one paragraph, no traceback, no code run, no results."""
    root = make_tiny_root(tmp_path / "root")
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil" / "model.ckpt"
    evil.parent.mkdir()
    write_payload(evil, marker, "lightning")
    shutil.copy(tiny_checkpoint(root) / "metadata.json", evil.parent)
    before = files_under(root)
    result = run_cli("unlearn.py", *TINY, f"checkpoint={evil}", f"paths.checkpoint_dir={root / 'checkpoints'}",
                     root=root, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "refused" in result.stderr and "arbitrary code" in result.stderr and "posix.system" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the checkpoint's payload ran"
    assert result_like(files_under(root) - before) == []




@pytest.mark.parametrize("kind", ["zip", "legacy", "plain_pickle"])
def test_code_carrying_cache_entry_is_ignored(tmp_path, kind):
    """A cache file replaced by a pickle payload is rejected as unreadable: no code runs, the entry is recomputed."""
    from unlearning.cache import TensorCache

    parts = {"kind": "importance", "weights": "w", "split": "forget", "batch_size": 64}
    cache = TensorCache(tmp_path / "cache")
    cache.put(parts, {"conv.weight": torch.ones(3, 3)})
    marker = tmp_path / "MARKER"
    write_payload(cache.path(cache.key(parts)), marker, kind)
    fresh = TensorCache(tmp_path / "cache")  # another process: nothing in memory
    assert fresh.get(parts) is None and fresh.stats.rejected == 1
    value = fresh.get_or_compute(parts, lambda: {"conv.weight": torch.full((3, 3), 2.0)})
    assert torch.equal(value["conv.weight"], torch.full((3, 3), 2.0))
    assert not marker.exists(), "a cache entry was unpickled"
    assert torch.equal(TensorCache(tmp_path / "cache").get(parts)["conv.weight"], torch.full((3, 3), 2.0))


@pytest.mark.slow
def test_code_carrying_cache_entries_are_never_unpickled(tmp_path):
    """Every cache file replaced by a pickle payload: the rerun ignores them and no code runs."""
    root = make_tiny_root(tmp_path / "root")
    common = [*TINY, "method=ssd", f"paths.root_dir={root}"]
    first = run_cli("unlearn.py", *common, f"hydra.run.dir={tmp_path / 'a'}", root=root, timeout=300)
    assert first.returncode == 0, first.stderr
    cache_files = [p for p in (root / ".cache").rglob("*") if p.is_file()]
    if not cache_files:
        pytest.skip("no cache files under paths.cache_dir after a run: adapt this test to the cache's switch")
    marker = tmp_path / "MARKER"
    for path in cache_files:
        write_payload(path, marker, "zip")
    second = run_cli("unlearn.py", *common, f"hydra.run.dir={tmp_path / 'b'}", root=root, timeout=300)
    assert not marker.exists(), "a cache entry was unpickled"
    assert "Traceback" not in second.stderr
    if second.returncode == 0:  # ignored and recomputed: the same result as without the cache
        a = json.loads((tmp_path / "a" / "results.json").read_text())["metrics"]
        b = json.loads((tmp_path / "b" / "results.json").read_text())["metrics"]
        assert a == b
    else:
        assert second.returncode == 2
