"""``python -m bench.recipe`` reads the published models of each training seed and judges floor and spread."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from bench.recipe import time_to_accuracy
from tests.conftest import ROOT, published_path, stand_in_for_seed


def test_time_to_accuracy_is_when_the_curve_reaches_the_target_for_good():
    """A dip below the target after reaching it restarts the clock; estimated without per-epoch times."""
    curve, elapsed = [50.0, 97.0, 95.0, 98.0, 99.0], [1.0, 2.5, 3.0, 4.5, 5.0]
    assert time_to_accuracy(curve, elapsed, 6.0, 96.5) == {
        "time_to_accuracy_s": 4.5, "epochs_to_accuracy": 4, "time_to_accuracy_estimated": False}
    assert time_to_accuracy(curve, None, 10.0, 96.5) == {
        "time_to_accuracy_s": 8.0, "epochs_to_accuracy": 4, "time_to_accuracy_estimated": True}
    assert time_to_accuracy(curve, elapsed, 6.0, 40.0)["epochs_to_accuracy"] == 1
    assert time_to_accuracy([50.0, 60.0], [1.0, 2.0], 2.0, 96.5)["time_to_accuracy_s"] is None
    assert time_to_accuracy([], None, 2.0, 96.5)["epochs_to_accuracy"] is None
    assert time_to_accuracy([None, 97.0, None, 99.0], [None, 2.5, None, 5.0], 6.0, 96.5)["time_to_accuracy_s"] is None, \
        "a curve with gaps (validate_every > 1) cannot say when the target was first reached"
    assert time_to_accuracy(curve, elapsed[:3], 10.0, 96.5)["time_to_accuracy_s"] == pytest.approx(8.0), \
        "a curve and times of different lengths are not paired"


def test_recipe_bench_reports_each_seed(trained_root):
    stand_in_for_seed(trained_root, 1)  # a second seed's folder (same weights): nothing is trained here
    checkpoints = trained_root / "checkpoints"
    result = subprocess.run([sys.executable, "-m", "bench.recipe", "--seeds", "0,1",
                             "--checkpoints", str(checkpoints)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    # seed 1 is seed 0's stand-in, or a real seed-1 model where the developer's reused root has one
    accuracies = [round(json.loads((published_path(trained_root, seed=seed) / "metadata.json").read_text())
                        ["test_acc"], 2) for seed in (0, 1)]
    assert "training:" not in result.stdout, "every seed was published: nothing to train"
    assert f"| 0 | {accuracies[0]:.2f} |" in result.stdout and f"| 1 | {accuracies[1]:.2f} |" in result.stdout
    spread = max(accuracies) - min(accuracies)
    assert f"spread {spread:.2f} points" in result.stdout
    holds = min(accuracies) >= 96.5 and spread <= 1.5
    assert result.returncode == (0 if holds else 1), result.stdout + result.stderr
    assert ("holds" if holds else "DOES NOT HOLD") in result.stdout
    # time to accuracy from the per-epoch times train.py recorded (not estimated) for the model trained here
    metadata = json.loads((published_path(trained_root, seed=0) / "metadata.json").read_text())
    if metadata.get("elapsed_s_per_epoch"):
        reached = time_to_accuracy(metadata["val_acc_per_epoch"], metadata["elapsed_s_per_epoch"],
                                   metadata["train_time_s"], 96.5)
        assert not reached["time_to_accuracy_estimated"] and len(metadata["elapsed_s_per_epoch"]) == metadata["epochs"]
        assert 0 < reached["time_to_accuracy_s"] <= metadata["train_time_s"]
        assert f"| {reached['time_to_accuracy_s']:.0f} ({reached['epochs_to_accuracy']}) |" in result.stdout

    # a stand-in is never recorded as a benchmark figure (only checked where seed 1 is one: --write
    # would otherwise record a developer's real models in bench/results.json)
    stand_in = json.loads((published_path(trained_root, seed=1) / "metadata.json").read_text())
    if stand_in.get("stand_in_of_seed") is not None:
        assert "test stand-in" in result.stderr
        before = (ROOT / "bench" / "results.json").read_bytes()
        refused = subprocess.run([sys.executable, "-m", "bench.recipe", "--seeds", "0,1", "--write", "--checkpoints",
                                  str(checkpoints)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and "test stand-in" in refused.stderr, refused.stderr
        assert (ROOT / "bench" / "results.json").read_bytes() == before


def test_a_model_validated_every_few_epochs_gets_an_every_epoch_copy_and_is_left_untouched(trained_root, tmp_path):
    """The convergence criterion reads every epoch: a published model with gaps in its curve (as
    ``dataset.training.validate_every`` > 1 leaves) is trained again beside the checkpoint folder,
    validating every epoch; the same weights (the cadence does not change them), so the same test
    accuracy; the published model is not replaced."""
    checkpoints = tmp_path / "checkpoints"
    published = checkpoints / published_path(trained_root).name
    shutil.copytree(published_path(trained_root), published)
    metadata = json.loads((published / "metadata.json").read_text())
    gaps = [None if (epoch + 1) % 2 else value for epoch, value in enumerate(metadata["val_acc_per_epoch"])]
    (published / "metadata.json").write_text(json.dumps({**metadata, "val_acc_per_epoch": gaps, "validate_every": 2}))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in published.iterdir()}
    result = subprocess.run([sys.executable, "-m", "bench.recipe", "--seeds", "0", "--checkpoints", str(checkpoints)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert "training:" in result.stdout and "validated-every-epoch" in result.stdout
    copy = tmp_path / "checkpoints-validated-every-epoch" / published.name
    copied = json.loads((copy / "metadata.json").read_text())
    assert None not in copied["val_acc_per_epoch"] and len(copied["val_acc_per_epoch"]) == metadata["epochs"]
    assert copied["test_acc"] == metadata["test_acc"], "the copy is the published model, validated every epoch"
    assert f"| 0 | {metadata['test_acc']:.2f} |" in result.stdout
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in published.iterdir()} == before
