"""End to end on the bundled digits: train.py's model, then unlearn.py with SSD and LFSSD."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import QUIET, compose_config, published_path, run_cli
from unlearning.evaluation.metrics import accuracy
from unlearning.evaluation.predictions import predict
from unlearning.evaluation.verdict import FORGET_MAX, verdict
from unlearning.jobs.builders import build_datamodule, build_model
from unlearning.jobs.unlearn import unlearn
from unlearning.models.checkpoints import load_checkpoint, load_into

METRIC_KEYS = {"retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc", "test_acc", "mia", "zrf",
               "per_class_test_acc", "mia_strong", "mia_auc", "probe_forget_test_acc", "probe_retain_test_acc",
               "val_acc", "retain_val_acc", "forget_val_acc"}  # validation: what objectives may read


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_trained_model_reaches_accuracy_and_reloads(trained_root, digits_checkpoint):
    state, metadata = load_checkpoint(digits_checkpoint)
    assert metadata["dataset"] == "digits" and metadata["label_kind"] == "fine" and metadata["num_classes"] == 10
    assert metadata["test_acc"] >= 95.0, f"ResNet18 on digits reached only {metadata['test_acc']:.2f}%"
    assert metadata["seed"] == 0 and "config" in metadata
    cfg = compose_config("train", [f"paths.root_dir={trained_root}", *QUIET])
    data = build_datamodule(cfg, task=None)
    data.setup()
    model = load_into(build_model(cfg, 10, 1), state, digits_checkpoint)
    logits, labels = predict(model, data.loader("test"))
    assert accuracy(logits, labels) == pytest.approx(metadata["test_acc"], abs=1e-9)
    coarse = load_checkpoint(published_path(trained_root, labels="coarse"))[1]
    assert coarse["label_kind"] == "coarse" and coarse["num_classes"] == 5


def test_train_keeps_an_existing_model(trained_root, tmp_path):
    kept = published_path(tmp_path, "dataset.training.epochs=1")
    shutil.copytree(published_path(trained_root), kept)
    before = digest(kept)
    result = run_cli("train.py", *QUIET, "dataset.training.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", root=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    assert digest(kept) == before
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file(), "the run keeps its own model"
    # the validation curve is recorded per epoch, on the validation split (never the test split)
    metadata = json.loads((tmp_path / "run" / "model" / "metadata.json").read_text())
    assert len(metadata["val_acc_per_epoch"]) == metadata["epochs"] == 1
    assert metadata["kept_epoch"] == 1 and metadata["n_val"] == 144 and metadata["n_train"] == 1293
    assert metadata["val_acc"] == pytest.approx(metadata["val_acc_per_epoch"][-1], abs=0.01)


def test_unlearn_cli_end_to_end(trained_root, digits_checkpoint, tmp_path):
    before = digest(digits_checkpoint)
    run_dir = tmp_path / "run"
    result = run_cli("unlearn.py", "logger=csv", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
                     root=trained_root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "original vs unlearned" in result.stdout and "Df-test acc" in result.stdout
    console = result.stdout + result.stderr
    assert console.count("GPU available") == 1, "Lightning's notices are printed once, through Hydra's logging"
    assert "litlogger" not in console.lower()
    assert "GPU available" in next(run_dir.glob("*.log")).read_text(), "and they reach the run's log file"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete" and results["method"] == "ssd" and results["task"] == "fullclass"
    assert results["forget"] == "class 3" and results["seed"] == 0
    assert set(results["metrics"]["original"]) == METRIC_KEYS == set(results["metrics"]["unlearned"])
    original, unlearned = results["metrics"]["original"], results["metrics"]["unlearned"]
    assert original["forget_test_acc"] > 90
    # README's first command: SSD at the paper's alpha 10 forgets digit 3 and, on the 8 px digits model,
    # takes the other digits with it (README, "Results on digits": alpha 10 collapses 13 of 30
    # requests). Measured over training seeds 0-2 (digit 3): Df-test 97.3 -> 0.0 % on each, Dr-test
    # 98.45 / 97.83 / 99.07 -> 11.15 / 10.84 / 10.84 %. Both halves are asserted: a drop that is not
    # forgetting, or alpha 10 no longer collapsing this model (README then says the wrong thing), fails.
    assert unlearned["forget_test_acc"] <= FORGET_MAX, "SSD at alpha 10 must forget digit 3"
    assert verdict(original, unlearned) == "collapsed", (original["retain_test_acc"], unlearned["retain_test_acc"])
    assert results["method_info"]["alpha"] == 10.0 and results["method_info"]["parameters_changed"] > 0
    assert results["method_time_s"] > 0 and results["evaluation_time_s"] > 0
    assert Path(results["source_checkpoint"]) == digits_checkpoint.resolve()
    assert results["config"]["method"]["lambda_"] == 1.0
    assert (run_dir / "unlearned" / "model.safetensors").is_file()
    assert digest(digits_checkpoint) == before, "the source checkpoint must never change"
    metrics_csv = (run_dir / "logs" / "metrics.csv").read_text()
    assert "unlearned/forget_test_acc" in metrics_csv


@pytest.mark.parametrize("method,task,forget", [("lfssd", "fullclass", "8"), ("ssd", "subclass", "5"),
                                                ("lfssd", "random", None), ("baseline", "fullclass", "1")])
def test_unlearn_in_process(trained_root, tmp_path, method, task, forget):
    overrides = [f"paths.root_dir={trained_root}", f"method={method}", f"task={task}", *QUIET]
    overrides.append(f"task.forget={forget}" if forget else "task.n_forget=60")
    results = unlearn(compose_config("unlearn", overrides), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "complete"
    original, unlearned = results["metrics"]["original"], results["metrics"]["unlearned"]
    if method == "baseline":
        assert original == unlearned and results["method_info"] == {}
        return
    assert results["method_info"]["variant"] == method
    assert results["method_info"]["parameters_changed"] > 0
    retain_drop = original["retain_test_acc"] - unlearned["retain_test_acc"]
    if task == "random":
        assert results["n_forget"] == 60 and results["label_kind"] == "fine"
        assert original["forget_test_acc"] != original["forget_test_acc"], "random forgetting has no Df-test (NaN)"
        # README: random samples are a sample of D, so their importances are alike and alpha 10 selects
        # almost nothing that matters: measured (seeds 0, 1) Df-train 100.0 / 96.7 % and Dr-test unchanged
        assert abs(unlearned["forget_train_acc"] - original["forget_train_acc"]) <= 2.0
        assert abs(retain_drop) <= 1.0
    if task == "subclass":
        assert results["label_kind"] == "coarse" and results["forget"] == "sub-class 5 of four_five"
        # measured on the seed-0 coarse model (the only one trained here): Df-test 100 -> 16.2 %, Df-train
        # 98.5 -> 9.2 %, Dr-test 96.90 -> 95.05 %
        assert unlearned["forget_test_acc"] <= original["forget_test_acc"] - 50.0, unlearned["forget_test_acc"]
        assert retain_drop <= 5.0, retain_drop
    if (method, task) == ("lfssd", "fullclass"):
        # digit 8 (35 Df-test images, 2.9 points each) at alpha 10, measured over training seeds 0, 1, 2:
        # Df-test 94.3 / 97.1 / 97.1 -> 85.7 / 88.6 / 91.4 %, Df-train 99.2 -> 93.6 / 93.6 / 92.8 %, Dr-test
        # +0.6 / +0.3 / 0.0 points: LFSSD at the paper's alpha forgets a little of this digit and keeps the rest
        assert unlearned["forget_test_acc"] <= original["forget_test_acc"] - 5.0, unlearned["forget_test_acc"]
        assert unlearned["forget_train_acc"] <= original["forget_train_acc"] - 4.0
        assert retain_drop <= 1.0, retain_drop


def test_lfssd_uses_no_labels(trained_root, tmp_path, monkeypatch):
    """LFSSD's importance pass never reads a label: scrambling them changes nothing."""
    import unlearning.data.datamodule as datamodule

    overrides = [f"paths.root_dir={trained_root}", "method=lfssd", "task.forget=4", *QUIET]
    honest = unlearn(compose_config("unlearn", overrides), tmp_path / "a")
    original_getitems = datamodule.LabelledImages.__getitems__
    monkeypatch.setattr(datamodule.LabelledImages, "__getitems__",
                        lambda self, positions: [(image, -12345) for image, _ in original_getitems(self, positions)])
    from unlearning.methods.ssd import method as ssd_method

    captured = {}
    original_unlearn = ssd_method.SSD.unlearn

    def spy(self, model, data, context):
        original_unlearn(self, model, data, context)
        captured["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        raise KeyboardInterrupt  # stop before evaluation, which does need labels

    monkeypatch.setattr(ssd_method.SSD, "unlearn", spy)
    with pytest.raises(KeyboardInterrupt):
        unlearn(compose_config("unlearn", overrides), tmp_path / "b")
    reference = load_file(str(tmp_path / "a" / "unlearned" / "model.safetensors"))
    for name, value in captured["state"].items():
        assert torch.equal(value, reference[name]), name
    assert honest["method_info"]["variant"] == "lfssd"


def test_refuses_a_checkpoint_for_other_labels(trained_root, tmp_path):
    coarse = published_path(trained_root, labels="coarse")
    result = run_cli("unlearn.py", *QUIET, f"checkpoint={coarse}", f"hydra.run.dir={tmp_path / 'run'}", root=trained_root)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())  # the message is wrapped at 100 columns; long paths move the breaks
    assert "does not match this run" in message and "label_kind is 'coarse'" in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_cifar100_subclass_offline_says_what_to_download(tmp_path):
    result = run_cli("unlearn.py", "method=lfssd", "dataset=cifar100", "task=subclass", "dataset.builder.download=false",
                     *QUIET, root=tmp_path)
    assert result.returncode == 2
    assert "cifar-100-python" in result.stderr and "Download cifar-100-python.tar.gz" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.distributed
def test_ddp_two_processes_match_one(trained_root, tmp_path):
    """trainer=ddp (2 CPU processes, gloo) gives the same dampened weights as 1 process."""
    runs = {}
    for name, extra in (("one", []), ("two", ["trainer=ddp", "trainer.devices=2"])):
        run_dir = tmp_path / name
        result = run_cli("unlearn.py", *QUIET, *extra, "task.forget=6", f"hydra.run.dir={run_dir}", root=trained_root)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = json.loads((run_dir / "results.json").read_text())
        runs[name]["weights"] = load_file(str(run_dir / "unlearned" / "model.safetensors"))
    assert runs["two"]["method_info"]["devices"] == 2 and runs["one"]["method_info"]["devices"] == 1
    assert runs["two"]["method_info"]["parameters_changed"] == runs["one"]["method_info"]["parameters_changed"]
    for name, value in runs["one"]["weights"].items():
        torch.testing.assert_close(runs["two"]["weights"][name], value, rtol=1e-5, atol=1e-8)


# slow (about 50 s): SSD's equality under DDP stays in the default suite (test_ddp_two_processes_match_one)
@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_auto_lfssd_matches_one_process(trained_root, tmp_path):
    """method.alpha=auto under trainer=ddp: LFSSD's imp_D over batches grouped by the predicted class
    (predicted on both processes, gathered) and the search give what one process gives."""
    runs = {}
    for name, extra in (("one", []), ("two", ["trainer=ddp", "trainer.devices=2"])):
        run_dir = tmp_path / name
        result = run_cli("unlearn.py", *QUIET, *extra, "method=lfssd", "method.alpha=auto", "method.cache=false",
                         "task.forget=3", f"hydra.run.dir={run_dir}", root=trained_root)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = json.loads((run_dir / "results.json").read_text())
        runs[name]["weights"] = load_file(str(run_dir / "unlearned" / "model.safetensors"))
    one, two = runs["one"]["method_info"], runs["two"]["method_info"]
    assert (one["devices"], two["devices"]) == (1, 2)
    assert one["reference"] == two["reference"] and one["reference"]["grouped_by"] == "predicted class"
    for key in ("chosen_alpha", "chosen_scope", "n_steps", "n_trials", "parameters_changed"):
        assert one[key] == two[key], key
    for name, value in runs["one"]["weights"].items():
        torch.testing.assert_close(runs["two"]["weights"][name], value, rtol=1e-4, atol=1e-6)
