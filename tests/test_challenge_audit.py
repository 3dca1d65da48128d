"""audit.py audit.kind=challenge end to end on real digits: N sources and references trained once, then scored."""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUIET, run_cli

FAST = [*QUIET, "audit.kind=challenge", "audit.challenge.models=3", "dataset.training.epochs=1", "task.n_forget=30"]


# e2e (about a minute: 3 source models, 3 references and 3 retrained models of one epoch each)
@pytest.mark.e2e
def test_retraining_scores_the_maximum_and_the_original_model_less(tmp_path):
    """method=retrain rebuilds each reference exactly (same seed, same recipe), so no test can tell the families
    apart: F = 1 and both accuracy ratios are 1. The untouched originals (method=baseline), trained on Df, must
    score below that, from the sources and references the first run published (nothing is trained again)."""
    retrain = run_cli("audit.py", *FAST, "method=retrain", f"hydra.run.dir={tmp_path / 'retrain'}", root=tmp_path,
                      check=True)
    assert retrain.stdout.count("No trained model") == 3  # one source per training seed
    assert retrain.stdout.count("No retrained reference") == 3  # and its reference
    scored = json.loads((tmp_path / "retrain" / "challenge.json").read_text())
    assert scored["seeds"] == [0, 1, 2] and scored["n_forget"] == 30 and len(scored["epsilons"]) == 30
    assert scored["forgetting_quality"] == 1.0 and scored["final_score"] == pytest.approx(1.0)
    assert scored["unlearned_test_acc"] == scored["retrained_test_acc"]

    baseline = run_cli("audit.py", *FAST, "method=baseline", f"hydra.run.dir={tmp_path / 'baseline'}", root=tmp_path,
                       check=True)
    assert "training it first" not in baseline.stdout
    original = json.loads((tmp_path / "baseline" / "challenge.json").read_text())
    assert original["forgetting_quality"] < 1.0 and original["final_score"] < scored["final_score"]
    assert "final score" in baseline.stdout


@pytest.mark.parametrize("overrides,says", [
    (["audit.challenge.models=2"], "audit.challenge.models must be a whole number >= 3"),
    (["audit.challenge.only_model=7"], "audit.challenge.only_model=7 is out of range"),
    (["audit.challenge.delta=1.5"], "audit.challenge.delta is the delta"),
    (["audit.kind=lira"], "audit.kind='lira' is unknown"),
])
def test_challenge_refuses_bad_settings(overrides, says, tmp_path):
    result = run_cli("audit.py", *QUIET, "audit.kind=challenge", *overrides, root=tmp_path)
    assert result.returncode == 2 and says in " ".join(result.stderr.split()), result.stderr
    assert not list(tmp_path.rglob("challenge.json")) and not list(tmp_path.rglob("*.safetensors"))
