"""``make demo``'s program on the session's trained digits model: both modes side by side, a sentence each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from unlearning.demo import WHAT
from unlearning.evaluation.verdict import verdict


def test_demo_prints_ssd_and_auto_side_by_side(trained_root, tmp_path):
    sweep = tmp_path / "demo"
    environment = {**os.environ, "UNLEARNING_ROOT": str(trained_root), "PYTHONUNBUFFERED": "1",
                   "COLUMNS": "160"}
    result = subprocess.run([sys.executable, "-m", "unlearning.demo", f"hydra.sweep.dir={sweep}",
                             "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"],
                            cwd=trained_root, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Forgetting class 3 of digits" in out
    assert "SSD, alpha 10" in out and "SSD, alpha=auto" in out
    runs = [json.loads((sweep / str(i) / "results.json").read_text()) for i in (0, 1)]
    assert runs[0]["method_info"]["alpha"] == 10.0 and runs[1]["method_info"]["alpha"] == "auto"
    for run in runs:  # the sentence under the table says what the numbers say
        outcome = verdict(run["metrics"]["original"], run["metrics"]["unlearned"])
        assert WHAT[outcome] in " ".join(out.split())
        assert f"{run['metrics']['unlearned']['forget_test_acc']:.2f}" in out


def test_demo_refuses_a_bad_override_before_any_work(tmp_path):
    environment = {**os.environ, "UNLEARNING_ROOT": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "unlearning.demo", "method=nonsense",
                             f"hydra.sweep.dir={tmp_path / 'demo'}"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "nonsense" in result.stdout + result.stderr
    assert not (tmp_path / "checkpoints").exists(), "nothing trained for a run that cannot start"
