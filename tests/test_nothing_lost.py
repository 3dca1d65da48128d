"""Nothing lost: killed writers leave the whole file or none; a run touches only its own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability_support import (
    TINY,
    digest_tree,
    files_under,
    job_config,
    make_tiny_root,
    tiny_checkpoint,
)
from unlearning.errors import UserError
from unlearning.models.checkpoints import checkpoint_exists, load_checkpoint
from unlearning.runs import CLAIM_FILE, claim_run_folder

WRITER = ROOT / "tests" / "killed_writer.py"


def run_writer(mode: str, base: Path, trials: int = 6, seed: int = 0) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, str(WRITER), mode, str(base), str(trials), str(seed)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr


def visible(folder: Path) -> list[str]:
    """Entries a reader would look at (hidden ``.name.*.tmp`` leftovers of a killed writer are not)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def consistent_checkpoint(folder: Path) -> int:
    """The save number of a complete checkpoint whose weights and metadata belong together."""
    state, metadata = load_checkpoint(folder)
    i = metadata["i"]
    assert all(bool((tensor == i).all()) for tensor in state.values()), f"weights are not those of save {i}"
    return i


def retired_copies(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.old-")]


def test_checkpoint_killed_at_random_moments_is_whole_or_absent(tmp_path):
    """SIGKILL at random moments of repeated 32 MB saves: never a partial or mixed checkpoint."""
    run_writer("checkpoint", tmp_path, trials=5, seed=1)
    outcomes = []
    for trial in sorted(tmp_path.iterdir()):
        target = trial / "ckpt"
        assert visible(trial) in ([], ["ckpt"]), visible(trial)
        if target.exists():
            assert visible(target) == ["metadata.json", "model.safetensors"]
            outcomes.append(consistent_checkpoint(target))
        else:  # killed before the first save finished, or between retiring the old copy and publishing
            for copy in retired_copies(trial, "ckpt"):
                consistent_checkpoint(copy)
            outcomes.append(0)
    assert len(outcomes) == 5


@pytest.fixture(scope="module")
def killed_at_each_point(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("points")
    run_writer("points", base, trials=0)
    return base


@pytest.mark.parametrize("point,expected", [("mid_weights", 1), ("after_weights", 1), ("between_renames", None),
                                            ("before_cleanup", 2)])
def test_checkpoint_killed_at_each_step_of_a_save(killed_at_each_point, point, expected):
    """SIGKILL at every step of replacing checkpoint 1 by 2: the old one, the new one, or none plus a hidden copy."""
    from tests.killed_writer import KILL_POINTS

    assert point in KILL_POINTS
    target = killed_at_each_point / point / "ckpt"
    if expected is None:
        assert not target.exists() and not checkpoint_exists(target)
        (copy,) = retired_copies(target.parent, "ckpt")
        assert consistent_checkpoint(copy) == 1, "the previous checkpoint must survive in the hidden copy"
    else:
        assert consistent_checkpoint(target) == expected
    assert visible(target.parent) in ([], ["ckpt"])


def test_results_json_killed_at_random_moments_is_whole_or_absent(tmp_path):
    run_writer("results", tmp_path, trials=6, seed=2)
    for trial in sorted(tmp_path.iterdir()):
        assert visible(trial) in ([], ["results.json"])
        target = trial / "results.json"
        if target.exists():
            record = json.loads(target.read_text())
            assert record["i"] == record["end"] and record["status"] == "complete"


@pytest.mark.slow  # the default suite checks the same on the CLI runs of tests/test_determinism.py
def test_unlearn_writes_only_its_own_folder(tmp_path, monkeypatch):
    """Source checkpoint bytes, the checkpoint folder, the working folder and other runs stay as they were.

    The only other place a run writes is the shared importance cache (``paths.cache_dir``).
    """
    from unlearning.jobs.unlearn import unlearn

    root = make_tiny_root(tmp_path / "root")
    other_run = tmp_path / "root" / "outputs" / "other"
    other_run.mkdir(parents=True)
    (other_run / "results.json").write_text('{"status": "complete"}\n')
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    source = tiny_checkpoint(root)
    before_hash, before_files = digest_tree(root / "checkpoints"), files_under(tmp_path)
    run_dir = root / "outputs" / "run"
    cfg = job_config("unlearn", [*TINY, f"paths.root_dir={root}", "logger=csv"], run_dir)
    results = unlearn(cfg, run_dir)
    assert results["status"] == "complete" and Path(results["source_checkpoint"]) == source.resolve()
    assert digest_tree(root / "checkpoints") == before_hash, "the checkpoint folder changed"
    new = files_under(tmp_path) - before_files
    allowed = (run_dir.resolve(), Path(cfg.paths.cache_dir).resolve())
    outside = sorted(p for p in new if not any((tmp_path / p).resolve().is_relative_to(a) for a in allowed)
                     and not any(a.is_relative_to((tmp_path / p).resolve()) for a in allowed))
    assert outside == [], f"written outside the run folder: {outside}"
    assert {"results.json", "unlearned/model.safetensors", "unlearned/metadata.json"} <= {
        str(Path(p).relative_to(run_dir.relative_to(tmp_path))) for p in new if p.startswith("root/outputs/run/")}
    assert CLAIM_FILE not in os.listdir(run_dir), "the run folder's claim must be released"
    with pytest.raises(UserError, match="already holds a finished"):
        unlearn(cfg, run_dir)  # a second run into the same folder would overwrite the first one's record


@pytest.mark.parametrize("finished", ["results.json", "model/metadata.json"])
def test_a_folder_with_a_finished_run_is_refused(tmp_path, finished):
    """A rerun into a finished run's folder would overwrite its record: refused, the folder unchanged."""
    from unlearning.jobs.unlearn import unlearn

    run_dir = tmp_path / "run"
    (run_dir / finished).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / finished).write_text('{"status": "complete"}\n')
    before = digest_tree(run_dir)
    if finished == "results.json":
        cfg = job_config("unlearn", [*TINY, f"paths.root_dir={tmp_path}"], run_dir)
        with pytest.raises(UserError, match="already holds a finished unlearning run.*resume=true"):
            unlearn(cfg, run_dir)
    else:
        from tests.reliability_support import run_entry

        assert run_entry("train", ["model=vit_tiny", "dataset.training.epochs=1", f"paths.root_dir={tmp_path}"],
                         run_dir) == 2
    assert digest_tree(run_dir) == before


def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "run"
        folder.mkdir()
        import socket

        (folder / CLAIM_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(UserError, match=f"in use by another run \\(pid {holder.pid}"):
            with claim_run_folder(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claim_run_folder(folder):  # the holder is dead now: its claim is stale and taken over
        assert json.loads((folder / CLAIM_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / CLAIM_FILE).exists()


def test_unlearn_refuses_to_write_over_its_own_source(tmp_path):
    from unlearning.jobs.unlearn import unlearn

    root = make_tiny_root(tmp_path / "root")
    run_dir = tmp_path / "run"
    (run_dir / "unlearned").parent.mkdir(parents=True)
    import shutil

    shutil.copytree(tiny_checkpoint(root), run_dir / "unlearned")
    before = digest_tree(run_dir)
    cfg = job_config("unlearn", [*TINY, f"paths.root_dir={root}", f"checkpoint={run_dir / 'unlearned'}"], run_dir)
    with pytest.raises(UserError, match="lies in this run's own output"):
        unlearn(cfg, run_dir)
    assert digest_tree(run_dir) == before


def test_atomic_writes_keep_the_usual_permissions(tmp_path):
    """Temporary files start private (0600/0700); published results and checkpoints must not stay so."""
    from unlearning.io import atomic_write_json, current_umask
    from unlearning.models.checkpoints import save_checkpoint

    umask = current_umask()
    results = atomic_write_json(tmp_path / "results.json", {"status": "complete"})
    folder = save_checkpoint(tmp_path / "ckpt", __import__("torch").nn.Linear(2, 2), {"i": 1})
    assert results.stat().st_mode & 0o777 == 0o666 & ~umask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in folder.iterdir())
