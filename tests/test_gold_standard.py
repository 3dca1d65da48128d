"""The retrained reference end to end on real digits: trained once for two processes, and what it reveals.

One module fixture runs two ``unlearn.py`` processes at the same time on the same forget
request with ``evaluation.reference=retrain``: the reference is a real ResNet18 retrained on Dr
with the recipe's schedule shortened to 6 epochs (``REFERENCE_EPOCHS``: a third of the time,
and what is checked does not need a 99 % model). Only one process may train it; both must
compare with it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, ROOT, compose_config, published_path

REFERENCE_EPOCHS = "dataset.training.epochs=6"


def start(root: Path, checkpoints: Path, name: str, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "unlearn.py"), *QUIET, f"paths.root_dir={root}",
               f"paths.checkpoint_dir={checkpoints}", "evaluation.reference=retrain", f"hydra.run.dir={root / name}",
               REFERENCE_EPOCHS, *overrides]
    log = open(root / f"{name}.out", "w")  # noqa: SIM115 - closed by the process's end
    return subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def two_runs(trained_root, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("gold")
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    source = published_path(trained_root)
    (checkpoints / source.name).symlink_to(source)
    # the source is given by path: the 6-epoch recipe of the quick reference is not the source's own
    given = f"checkpoint={checkpoints / source.name}"
    processes = {"ssd": start(root, checkpoints, "ssd", "method=ssd", "method.alpha=auto", given),
                 "baseline": start(root, checkpoints, "baseline", "method=baseline", given)}
    deadline = time.monotonic() + 1200
    for name, process in processes.items():
        code = process.wait(timeout=max(1, deadline - time.monotonic()))
        assert code == 0, (root / f"{name}.out").read_text()[-4000:]
    return {"root": root, "checkpoints": checkpoints,
            **{name: json.loads((root / name / "results.json").read_text()) for name in processes},
            "logs": {name: (root / f"{name}.out").read_text() for name in processes}}


@pytest.mark.e2e
def test_reference_is_trained_once_for_two_processes_and_published(two_runs):
    ssd, baseline = two_runs["ssd"], two_runs["baseline"]
    trained = [name for name, log in two_runs["logs"].items() if "training it first" in log]
    assert len(trained) == 1, f"the reference was trained by {trained}"
    assert ssd["reference"]["checkpoint"] == baseline["reference"]["checkpoint"]
    published = Path(ssd["reference"]["checkpoint"])
    assert published.parent == two_runs["checkpoints"] / "references" and published_path(Path("unused"), REFERENCE_EPOCHS).name in published.name
    metadata = json.loads((published / "metadata.json").read_text())
    assert metadata["reference"] == "retrain" and metadata["forget"] == "class 3" and metadata["seed"] == 0
    assert not list(published.parent.glob("*.lock")), "the lock must be released"
    # both runs compare with the same model: its metrics are the same numbers
    assert ssd["metrics"]["retrained"]["test_acc"] == baseline["metrics"]["retrained"]["test_acc"]
    retrained = ssd["metrics"]["retrained"]
    assert retrained["forget_test_acc"] == 0.0 and retrained["retain_test_acc"] > 90.0


@pytest.mark.e2e
def test_relative_metrics_tell_the_original_from_the_gold_standard(two_runs):
    original, relative = two_runs["baseline"]["metrics"], two_runs["baseline"]["metrics"]["relative"]
    # the baseline is the original model: every delta is the original's distance from retrain
    assert relative["tow"] == pytest.approx(relative["tow_original"])
    assert relative["delta_forget_train_acc"] == pytest.approx(original["original"]["forget_train_acc"])
    assert relative["tow"] < 0.1 and relative["js_forget"] > 0.5
    ssd = two_runs["ssd"]["metrics"]["relative"]
    for key in ("delta_retain_test_acc", "delta_test_acc", "gap_mia", "gap_mia_auc", "js_test"):
        assert key in ssd


@pytest.mark.e2e
@pytest.mark.xfail(strict=True, reason="issue 31: on the 8-epoch digits model (issue 27) the hands-free search finds no "
                   "alpha that forgets digit 3 within its retain tolerance (alpha 7.8 changes 14 % of Dr's predictions, "
                   "alpha 9.3 no parameter) and leaves the model unchanged; strict: passes again when the search is fixed")
def test_hands_free_ssd_comes_closer_to_retraining_than_the_original(two_runs):
    relative, ssd = two_runs["baseline"]["metrics"]["relative"], two_runs["ssd"]["metrics"]["relative"]
    assert ssd["tow"] > 0.5 > relative["tow"], "SSD (alpha=auto) forgets the class: far closer to retrain"
    assert ssd["js_forget"] < ssd["js_forget_original"]


@pytest.mark.e2e
def test_an_output_suppressed_model_fools_accuracy_but_not_the_probe(two_runs, trained_root):
    """Pushing the forgotten class's logit down zeroes Df-test accuracy; the features still know the class."""
    from unlearning.evaluation.evaluate import metrics_of, model_outputs, teacher_logits
    from unlearning.jobs.builders import build_datamodule, build_model, build_task
    from unlearning.models.checkpoints import load_checkpoint, load_into

    cfg = compose_config("unlearn", [f"paths.root_dir={two_runs['root']}", *QUIET])
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()

    def load(path) -> torch.nn.Module:
        state, _ = load_checkpoint(path)
        return load_into(build_model(cfg, data.num_classes, data.channels), state, path)

    original = load(published_path(trained_root))
    suppressed = copy.deepcopy(original)
    with torch.no_grad():
        suppressed.fc.bias[3] -= 1000.0  # never predicts class 3; every feature unchanged
    retrained = load(two_runs["ssd"]["reference"]["checkpoint"])
    teacher = teacher_logits(build_model(cfg, data.num_classes, data.channels), data)
    m = {name: metrics_of(model_outputs(model, data), data, teacher)
         for name, model in (("original", original), ("suppressed", suppressed), ("retrained", retrained))}
    assert m["suppressed"]["forget_test_acc"] == 0.0 and m["original"]["forget_test_acc"] > 95.0
    assert m["suppressed"]["probe_forget_test_acc"] == pytest.approx(m["original"]["probe_forget_test_acc"])
    assert m["retrained"]["probe_forget_test_acc"] < m["original"]["probe_forget_test_acc"] - 10.0


@pytest.mark.slow
def test_method_retrain_is_its_own_reference(two_runs):
    """``method=retrain`` computes exactly what the reference is: Tug-of-War 1, no divergence."""
    root = two_runs["root"]
    process = start(root, two_runs["checkpoints"], "retrain", "method=retrain")
    assert process.wait(timeout=1200) == 0, (root / "retrain.out").read_text()[-4000:]
    relative = json.loads((root / "retrain" / "results.json").read_text())["metrics"]["relative"]
    assert relative["tow"] == pytest.approx(1.0) and relative["js_forget"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.e2e
def test_report_shows_the_reference_columns_and_row(two_runs, tmp_path):
    from unlearning.report.collect import collect
    from unlearning.report.tables import markdown, summarise

    runs = collect([two_runs["root"] / "ssd", two_runs["root"] / "baseline"]).frame()
    summary = summarise(runs)
    table = markdown(summary, runs)
    for header in ("ToW", "Δ Dr-test", "JS Df", "MIA AUC", "probe Df %"):
        assert header in table.splitlines()[0]
    retrained = summary[summary["method"] == "retrained"].iloc[0]
    assert retrained["tow_mean"] == 1.0 and retrained["forget_test_acc_mean"] == 0.0
    assert retrained["probe_forget_test_acc_mean"] == two_runs["ssd"]["metrics"]["retrained"]["probe_forget_test_acc"]
    ssd = summary[summary["method"] == "ssd"].iloc[0]
    assert ssd["tow_mean"] == pytest.approx(two_runs["ssd"]["metrics"]["relative"]["tow"])
    # a table without baseline runs: its "original" row shows the original's distance from the reference,
    # not the first run's (the bug that showed SSD's -32 points as the original's)
    alone = collect([two_runs["root"] / "ssd"]).frame()
    original = summarise(alone).query("method == 'original'").iloc[0]
    m = two_runs["ssd"]["metrics"]
    assert original["delta_retain_test_acc_mean"] == pytest.approx(
        m["original"]["retain_test_acc"] - m["retrained"]["retain_test_acc"])


# slow (about 40 s): the lock that makes one process train the reference is in the default suite
# (test_reference_is_trained_once_for_two_processes_and_published), DDP's equality in test_ddp_two_processes_match_one
@pytest.mark.slow
@pytest.mark.distributed
def test_reference_under_ddp_is_trained_by_rank_zero(trained_root, tmp_path):
    """trainer=ddp (2 CPU processes): rank 0 trains and publishes the reference once, on one device."""
    from tests.conftest import run_cli

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    source = published_path(trained_root)
    (checkpoints / source.name).symlink_to(source)
    result = run_cli("unlearn.py", *QUIET, "trainer=ddp", "trainer.devices=2", "method=ssd",
                     "evaluation.reference=retrain", "dataset.training.epochs=1", f"paths.checkpoint_dir={checkpoints}",
                     f"hydra.run.dir={tmp_path / 'run'}", root=tmp_path, check=True, timeout=900)
    assert result.stdout.count("training it first") == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert Path(results["reference"]["checkpoint"]).parent == checkpoints / "references"
    assert "tow" in results["metrics"]["relative"]
