"""Config groups lightning-hydra-template users expect: debug/, callbacks/, local/, extras/.

``debug=fast`` runs for real (a tiny ViT trained on the spot on 10 % of digits, then a fine-tuning
method with the default callbacks); the rest is checked on composed configs and built trainers.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time

import lightning as L
import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, Timer
from omegaconf import open_dict

from tests.conftest import ROOT, compose_config, run_cli
from unlearning.data.digits import build_digits
from unlearning.data.selection import subset_bundle
from unlearning.errors import UserError
from unlearning.jobs.builders import config_callbacks, make_trainer


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> dict:
    """One real ``debug=fast`` run in a fresh root (the source model is trained on the spot) with a training
    method, the default callbacks, two loggers and the retrained reference: read by the tests below."""
    root = tmp_path_factory.mktemp("fast")
    assert os.environ.get("WANDB_MODE") in (None, "offline"), "these tests check the config's own offline default"
    started = time.monotonic()
    result = run_cli("unlearn.py", "debug=fast", "method=finetune", "callbacks=default", "logger=many",
                     "evaluation.reference=retrain", "trainer.accelerator=cpu", "hydra.run.dir=run",
                     root=root, check=True, timeout=300, env={"WANDB_SILENT": "true"})
    return {"root": root, "run": root / "run", "seconds": time.monotonic() - started, "stdout": result.stdout}


def test_debug_fast_finishes_in_seconds_and_leaves_the_registry_alone(fast_run):
    root = fast_run["root"]
    assert fast_run["seconds"] < 90, f"debug=fast took {fast_run['seconds']:.0f} s"
    record = json.loads((fast_run["run"] / "results.json").read_text())
    assert record["model"] == "vit_tiny" and record["n_forget"] + record["n_retain"] < 200
    assert any((root / "outputs" / "debug" / "checkpoints").glob("digits-fine-vit_tiny-16px-seed0-r*"))
    assert not (root / "checkpoints").exists(), "debug=fast published into the real registry"


def test_a_training_method_logs_its_curves_to_csv_and_offline_wandb(fast_run):
    """finetune's loss, the reference's and the source model's training, each under its prefix, beside
    the final metrics, in CSV and in one offline W&B run (no account, no network)."""
    run = fast_run["run"]
    with open(run / "logs" / "finetune" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and any(row.get("finetune-unlearn/train_loss") for row in rows), rows[:3]
    assert "lr-SGD" in (run / "logs" / "finetune" / "metrics.csv").read_text(), "callbacks=default's lr_monitor"
    assert "unlearned/forget_test_acc" in (run / "logs" / "metrics.csv").read_text()
    assert "reference-train/loss_step" in (run / "logs" / "reference" / "metrics.csv").read_text()
    # the source model trained first (train_if_missing) keeps its curves too, under "source"
    assert "source-train/loss_step" in (run / "logs" / "source" / "metrics.csv").read_text()
    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1, "one offline W&B run holds the curves and the final metrics"
    data = offline[0].read_bytes()
    assert b"finetune-unlearn/train_loss" in data and b"unlearned/forget_test_acc" in data


def test_debug_fast_composes_one_batch_and_yields_to_the_command_line():
    cfg = compose_config("unlearn", ["debug=fast"])
    assert cfg.trainer.limit_train_batches == 1 and cfg.model.name == "vit_tiny"
    assert cfg.dataset.subset.fraction == 0.1 and cfg.paths.checkpoint_dir.endswith("outputs/debug/checkpoints")
    assert compose_config("unlearn", ["debug=fast", "model=resnet18"]).model.name == "resnet18"
    assert compose_config("train", ["debug=limit"]).trainer.limit_train_batches == 0.25
    assert compose_config("unlearn", []).get("debug") is None and compose_config("unlearn", []).callbacks in ({}, None)


def test_subset_keeps_every_class_and_refuses_a_bad_fraction():
    bundle = build_digits()
    small = subset_bundle(bundle, fraction=0.1, seed=0, minimum=2)
    assert len(small.train_images) == len(small.train_fine) < 0.12 * len(bundle.train_fine)
    assert set(small.train_fine) == set(bundle.train_fine) and set(small.test_fine) == set(bundle.test_fine)
    coarse_of = dict(zip(bundle.train_fine.tolist(), bundle.train_coarse.tolist(), strict=True))
    assert small.train_coarse.tolist() == [coarse_of[f] for f in small.train_fine.tolist()], "labels stay aligned"
    assert subset_bundle(bundle, fraction=1.0) is bundle
    for bad in (0, 1.5, "half"):
        with pytest.raises(UserError, match="dataset.subset.fraction"):
            subset_bundle(bundle, fraction=bad)


def test_callbacks_from_yaml_reach_every_trainer(tmp_path):
    cfg = compose_config("unlearn", ["callbacks=default", "trainer.accelerator=cpu"])
    with_logger = config_callbacks(cfg, has_logger=True)
    assert {type(c) for c in with_logger} == {LearningRateMonitor, Timer}
    assert [type(c) for c in config_callbacks(cfg, has_logger=False)] == [Timer], "a monitor needs a logger"
    trainer = make_trainer(cfg, False, default_root_dir=str(tmp_path))
    assert any(isinstance(c, Timer) for c in trainer.callbacks)
    bad = compose_config("unlearn", ["+callbacks.bad._target_=collections.OrderedDict"])
    with pytest.raises(UserError, match="callbacks.bad built a OrderedDict"):
        config_callbacks(bad, has_logger=True)
    assert isinstance(trainer, L.Trainer)


def test_local_settings_are_optional_and_git_ignored():
    assert compose_config("unlearn", ["local=example"]).paths.data_dir.endswith("/data")
    ignored = subprocess.run(["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=ROOT)
    assert ignored.returncode == 0, "conf/local/default.yaml must be git-ignored"


def test_extras_print_the_config(capsys):
    from unlearning.cli import apply_extras

    cfg = compose_config("unlearn", ["extras.print_config=true", "method=lfssd", "logger=none"])
    with open_dict(cfg):
        del cfg["hydra"]
    apply_extras(cfg)
    assert "name: lfssd" in capsys.readouterr().out
