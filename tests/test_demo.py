"""``make demo``'s program on the session's trained digits model: both modes side by side, a sentence each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, published_path
from unlearning.demo import WHAT
from unlearning.evaluation.verdict import judge


@pytest.mark.e2e
def test_demo_prints_ssd_and_auto_side_by_side(trained_root, tmp_path):
    sweep = tmp_path / "demo"
    checkpoints = tmp_path / "checkpoints"  # the session's source model; the reference is published beside it here
    checkpoints.mkdir()
    source = published_path(trained_root)
    (checkpoints / source.name).symlink_to(source)
    environment = {**os.environ, "UNLEARNING_ROOT": str(trained_root), "PYTHONUNBUFFERED": "1",
                   "COLUMNS": "160"}
    # A 2-epoch reference (not the recipe's 15) keeps this test short; what is checked is the demo's table.
    result = subprocess.run([sys.executable, "-m", "unlearning.demo", f"hydra.sweep.dir={sweep}",
                             "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
                             "dataset.training.epochs=2", f"checkpoint={source}", f"paths.checkpoint_dir={checkpoints}"],
                            cwd=trained_root, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Forgetting class 3 of digits" in out
    assert "SSD, alpha 10" in out and "SSD, alpha=auto" in out
    runs = [json.loads((sweep / str(i) / "results.json").read_text()) for i in (0, 1)]
    assert "retrained without it" in out and "Tug-of-War" in out and "linear probe" in out
    assert runs[0]["reference"]["checkpoint"] == runs[1]["reference"]["checkpoint"]
    assert f"{runs[1]['metrics']['relative']['tow']:.3f}" in out
    assert runs[0]["method_info"]["alpha"] == 10.0 and runs[1]["method_info"]["alpha"] == "auto"
    for run in runs:  # the sentence under the table says what the numbers say
        outcome = judge(run["metrics"]["original"], run["metrics"]["unlearned"], run["metrics"]["retrained"])
        assert WHAT[outcome] in " ".join(out.split())
        assert f"{run['metrics']['unlearned']['forget_test_acc']:.2f}" in out


def test_demo_refuses_a_bad_override_before_any_work(tmp_path):
    environment = {**os.environ, "UNLEARNING_ROOT": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "unlearning.demo", "method=nonsense",
                             f"hydra.sweep.dir={tmp_path / 'demo'}"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "nonsense" in result.stdout + result.stderr
    assert not (tmp_path / "checkpoints").exists(), "nothing trained for a run that cannot start"


def test_readme_demo_output_is_what_the_demo_prints_for_its_committed_records():
    """``--show`` prints a finished demo sweep again; README embeds exactly that for results/demo (records check)."""
    records = ROOT / "results" / "demo" / "runs"
    shown = subprocess.run([sys.executable, "-m", "unlearning.demo", "--show", str(records)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    readme = (ROOT / "README.md").read_text()
    assert f"<!-- table: demo demo-output -->\n```\n{shown.stdout}```\n<!-- /table -->" in readme
    runs = [json.loads((records / str(i) / "results.json").read_text()) for i in (0, 1)]
    for run in runs:  # the sentences say what the committed numbers say
        outcome = judge(run["metrics"]["original"], run["metrics"]["unlearned"], run["metrics"]["retrained"])
        assert WHAT[outcome] in " ".join(shown.stdout.split())
    refused = subprocess.run([sys.executable, "-m", "unlearning.demo", "--show", str(ROOT / "no-such-sweep")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "usage: python -m unlearning.demo --show" in refused.stderr
