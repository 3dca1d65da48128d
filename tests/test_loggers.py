"""Several loggers at once, and the training-based methods' curves in them (W&B offline, no account)."""

from __future__ import annotations

import csv
import os

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from tests.conftest import compose_config, run_cli
from unlearning.errors import UserError
from unlearning.jobs.builders import curve_logger
from unlearning.loggers import Loggers, build_loggers


@pytest.mark.parametrize("choice", ["many", "[csv,wandb]"])
def test_several_loggers_compose(choice):
    cfg = compose_config("unlearn", [f"logger={choice}"])
    assert set(cfg.logger) == {"csv", "wandb"} and cfg.logger.wandb.offline is True
    assert compose_config("unlearn", ["logger=none"]).logger is None


def test_prefixed_loggers_keep_a_method_apart(tmp_path):
    cfg = compose_config("unlearn", ["logger=many", f"logger.csv.save_dir={tmp_path}", f"logger.wandb.save_dir={tmp_path}",
                                     "method=scrub"])
    loggers = curve_logger(cfg, False, {"max_epochs": 2})
    assert isinstance(loggers, Loggers) and [type(lg) for lg in loggers] == [CSVLogger, WandbLogger]
    assert loggers[0].version == "scrub" and all(lg._prefix == "scrub" for lg in loggers)
    assert curve_logger(cfg, False, {"max_epochs": 0}) is False, "a weight-editing fit logs nothing"
    assert curve_logger(compose_config("audit", ["logger=many"]), False, {"max_epochs": 2}) is False
    assert [lg._prefix for lg in curve_logger(cfg, "reference", {})] == ["reference", "reference"]
    bad = compose_config("unlearn", ["+logger.bad._target_=collections.OrderedDict", "logger=csv",
                                     f"logger.csv.save_dir={tmp_path}"])
    with pytest.raises(UserError, match="logger.bad built a OrderedDict"):
        build_loggers(bad)


def test_a_training_method_logs_its_curves_to_csv_and_offline_wandb(tmp_path):
    """finetune's loss and the retrained reference's training, each under its prefix, next to the final metrics."""
    assert os.environ.get("WANDB_MODE") in (None, "offline"), "this test checks the config's own offline default"
    run_cli("unlearn.py", "debug=fast", "method=finetune", "logger=many", "evaluation.reference=retrain",
            "trainer.accelerator=cpu",
            "hydra.run.dir=run", root=tmp_path, check=True, timeout=300,
            env={"WANDB_SILENT": "true"})
    run = tmp_path / "run"
    with open(run / "logs" / "finetune" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and any(row.get("finetune-unlearn/train_loss") for row in rows), rows[:3]
    assert "unlearned/forget_test_acc" in (run / "logs" / "metrics.csv").read_text()
    assert "reference-train/loss_step" in (run / "logs" / "reference" / "metrics.csv").read_text()
    # the source model trained first (train_if_missing) keeps its curves too, under "source"
    assert "source-train/loss_step" in (run / "logs" / "source" / "metrics.csv").read_text()
    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1, "one offline W&B run holds the curves and the final metrics"
    data = offline[0].read_bytes()
    assert b"finetune-unlearn/train_loss" in data and b"unlearned/forget_test_acc" in data
