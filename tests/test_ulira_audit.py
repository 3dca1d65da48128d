"""audit.py end to end on real digits: shadows trained once (also across a multirun), then scored."""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUIET, run_cli

FAST = [*QUIET, "dataset.training.epochs=1", "audit.shadows=5", "task.n_forget=60", "method=ssd"]


@pytest.fixture(scope="module")
def audit_root(tmp_path_factory, trained_root):
    root = tmp_path_factory.mktemp("audit")
    (root / "checkpoints").mkdir()
    return root


# e2e, run by CI (about 70 s, three CLI runs training shadows): the only test that audit.py completes;
# U-LiRA's arithmetic, and that it finds members a model memorised, are tested in test_ulira.py
@pytest.mark.e2e
def test_shadows_spread_over_a_multirun_are_reused_by_the_audit(audit_root):
    sweep = run_cli("audit.py", "-m", *FAST, "audit.only_shadow=0,1", f"hydra.sweep.dir={audit_root / 'sweep'}",
                    root=audit_root, check=True)
    assert sweep.stdout.count("Training shadow model") == 2
    shadows = sorted(p.name for p in (audit_root / "checkpoints" / "shadows").iterdir())
    assert len(shadows) == 2 and "half0" in shadows[0] and "half1" in shadows[1]
    assert not (audit_root / "sweep" / "0" / "ulira.json").exists(), "a single shadow is not an audit"

    full = run_cli("audit.py", *FAST, f"hydra.run.dir={audit_root / 'audit'}", root=audit_root, check=True)
    assert full.stdout.count("Training shadow model") == 3, "shadows 0 and 1 must come from the multirun"
    results = json.loads((audit_root / "audit" / "ulira.json").read_text())
    assert results["shadows"] == 5 and results["n_targets"] == 60
    assert results["n_unlearned"] > 0 and results["n_retrained"] > 0
    assert 0.0 <= results["auc"] <= 1.0 and 0.0 <= results["balanced_accuracy_at_zero"] <= 1.0
    assert "attack AUC" in full.stdout and 0.0 <= results["control_auc"] <= 1.0
    assert results["has_power"] == (results["control_auc"] >= 0.6)

    again = run_cli("audit.py", *FAST, f"hydra.run.dir={audit_root / 'again'}", root=audit_root, check=True)
    assert "Training shadow model" not in again.stdout
    assert json.loads((audit_root / "again" / "ulira.json").read_text())["auc"] == results["auc"]


@pytest.mark.parametrize("overrides,says", [
    (["task=fullclass"], "needs task=random"),
    (["audit.shadows=3"], "audit.shadows must be a whole number >= 5"),
    (["audit.only_shadow=9"], "audit.only_shadow=9 is out of range"),
])
def test_audit_refuses_bad_settings(overrides, says, tmp_path):
    result = run_cli("audit.py", *QUIET, *overrides, root=tmp_path)
    assert result.returncode == 2 and says in " ".join(result.stderr.split()), result.stderr
    assert not list(tmp_path.rglob("ulira.json"))
