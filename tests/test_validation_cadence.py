"""How often training validates (``dataset.training.validate_every``): fewer passes, the same model.

Validation only reads the validation split, so a model validated every second epoch must be
bit-identical to one validated every epoch and keep its registry identity (the tables' models and
references are found by it); its curve has a gap (None) for each epoch not validated, and the
last epoch, the kept model, is always validated, whether or not the cadence divides the epochs.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import QUIET, compose_config
from unlearning.errors import UserError
from unlearning.jobs.builders import build_datamodule, build_model, build_task, make_trainer, model_identity
from unlearning.jobs.train import checked_schedule, train
from unlearning.methods.base import MethodContext
from unlearning.methods.retrain import train_from_scratch
from unlearning.models.classifier import training_settings


def trained(root, every: int):
    cfg = compose_config("train", [f"paths.root_dir={root}", *QUIET, "dataset.training.epochs=5",
                                   f"dataset.training.validate_every={every}"])
    published = train(cfg, output_dir=root / "run")
    return cfg, published, json.loads((published / "metadata.json").read_text())


def test_validating_less_often_trains_the_same_model_under_the_same_identity(tmp_path):
    cfg_every, every_epoch, curve_every = trained(tmp_path / "every", 1)
    cfg_last, last_only, curve_last = trained(tmp_path / "every-2nd", 2)
    assert every_epoch.name == last_only.name, "the cadence is not part of the registry identity"
    assert model_identity(cfg_every, "fine", 8) == model_identity(cfg_last, "fine", 8)
    weights_every, weights_last = load_file(every_epoch / "model.safetensors"), load_file(last_only / "model.safetensors")
    assert weights_every.keys() == weights_last.keys()
    assert all(torch.equal(weights_every[k], weights_last[k]) for k in weights_every), "validation changed the weights"
    assert len(curve_every["val_acc_per_epoch"]) == 5 and None not in curve_every["val_acc_per_epoch"]
    # epochs 2 and 4 validated, 1 and 3 skipped, 5 validated because it is the last (the kept model):
    # the same models at those epochs, so the same accuracies
    validated = [False, True, False, True, True]
    assert [v is not None for v in curve_last["val_acc_per_epoch"]] == validated
    assert [v is not None for v in curve_last["elapsed_s_per_epoch"]] == validated
    assert [v for v in curve_last["val_acc_per_epoch"] if v is not None] == curve_every["val_acc_per_epoch"][1::2] + \
        [curve_every["val_acc_per_epoch"][-1]]
    assert curve_last["val_acc"] == curve_every["val_acc"] == curve_every["val_acc_per_epoch"][-1]
    assert (curve_every["validate_every"], curve_last["validate_every"]) == (1, 2)


def test_a_retrained_reference_validated_less_often_is_the_same_model(tmp_path):
    """Retraining (the references every table waits for) takes the cadence from the source recipe:
    every 2nd epoch and the last gives the weights of every epoch, and a curve with a gap."""
    cfg = compose_config("unlearn", [f"paths.root_dir={tmp_path}", "task.forget=3", *QUIET])
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()

    def retrained(every: int):
        def fresh():
            torch.manual_seed(1)
            return build_model(cfg, data.num_classes, data.channels)

        schedule = {**training_settings(cfg.dataset.training, None), "validate_every": every}
        context = MethodContext(make_trainer=partial(make_trainer, cfg, False, default_root_dir=str(tmp_path)),
                                fresh_model=fresh, original=fresh(), task="fullclass", training=schedule)
        model = fresh()
        torch.manual_seed(0)  # as the reference job's seed does
        info = train_from_scratch(model, data, context, "retain", epochs=3)
        return model.state_dict(), info

    (every_epoch, info_every), (every_2nd, info_2nd) = retrained(1), retrained(2)
    assert all(torch.equal(every_epoch[k], every_2nd[k]) for k in every_epoch), "validation changed the reference"
    assert [v is not None for v in info_2nd["val_acc_per_epoch"]] == [False, True, True]
    assert info_2nd["val_acc_per_epoch"][1:] == info_every["val_acc_per_epoch"][1:]
    assert (info_every["validate_every"], info_2nd["validate_every"]) == (1, 2)


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "often"])
def test_a_cadence_that_is_not_a_whole_number_of_epochs_is_refused(every):
    cfg = compose_config("train", [*QUIET, f"dataset.training.validate_every={every}"])
    with pytest.raises(UserError, match=r"validate_every must be a whole number of epochs >= 1"):
        checked_schedule(cfg)
