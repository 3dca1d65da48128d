"""``python -m bench.recipe`` reads the published models of each training seed and judges floor and spread."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, stand_in_for_seed


def test_recipe_bench_reports_each_seed(trained_root):
    stand_in_for_seed(trained_root, 1)  # a second seed's folder (same weights): nothing is trained here
    checkpoints = trained_root / "checkpoints"
    result = subprocess.run([sys.executable, "-m", "bench.recipe", "--seeds", "0,1",
                             "--checkpoints", str(checkpoints)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    accuracy = json.loads((checkpoints / "digits-fine-resnet18-8px-seed0" / "metadata.json").read_text())["test_acc"]
    assert "training:" not in result.stdout, "every seed was published: nothing to train"
    assert f"| 0 | {accuracy:.2f} |" in result.stdout and f"| 1 | {accuracy:.2f} |" in result.stdout
    assert "spread 0.00 points" in result.stdout
    holds = accuracy >= 96.5
    assert result.returncode == (0 if holds else 1), result.stdout + result.stderr
    assert ("holds" if holds else "DOES NOT HOLD") in result.stdout
