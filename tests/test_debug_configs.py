"""Config groups lightning-hydra-template users expect: debug/, callbacks/, local/, extras/.

``debug=fast`` runs for real (a tiny ViT trained on the spot on 10 % of digits, then a fine-tuning
method with the default callbacks); the rest is checked on composed configs and built trainers.
"""

from __future__ import annotations

import json
import subprocess
import time

import lightning as L
import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, Timer
from omegaconf import open_dict

from tests.conftest import ROOT, compose_config, run_cli
from unlearning.data.digits import build_digits
from unlearning.errors import UserError
from unlearning.jobs.builders import config_callbacks, make_trainer
from unlearning.jobs.subset import subset_bundle


def test_debug_fast_finishes_in_seconds_and_leaves_the_registry_alone(tmp_path):
    started = time.monotonic()
    result = run_cli("unlearn.py", "debug=fast", "method=finetune", "callbacks=default", "trainer.accelerator=cpu",
                     root=tmp_path, check=True, timeout=300)
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"debug=fast took {elapsed:.0f} s"
    records = list((tmp_path / "outputs" / "debug" / "unlearn").glob("*/results.json"))
    assert len(records) == 1, result.stdout[-2000:]
    record = json.loads(records[0].read_text())
    assert record["model"] == "vit_tiny" and record["n_forget"] + record["n_retain"] < 200
    assert (tmp_path / "outputs" / "debug" / "checkpoints" / "digits-fine-vit_tiny-16px-seed0").is_dir()
    assert not (tmp_path / "checkpoints").exists(), "debug=fast published into the real registry"


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
