"""Retrain: re-initialise every weight and train on Dr only, with the dataset's own schedule.

The gold standard every other method is compared with. **Deviation from the SSD reference
code**, which called ``reset_parameters()`` only on the model's direct children (for its
ResNet18 that re-initialised little more than the last layer, so "retrain" started from
the trained features): here every weight and batch-norm statistic is re-initialised, by
copying a freshly built model of the same architecture into the model (``context.fresh_model``,
seeded by the run's seed). For ViT that fresh model is the same ImageNet-pretrained backbone
with a new head that the original was fine-tuned from, so retrain repeats the original
fine-tuning on Dr. The schedule is the one ``train.py`` used for the source model (epochs,
learning rate, milestones, warm-up, batch size, augmentation); the final epoch's weights are
kept, as ``train.py`` keeps by default; its validation accuracy per epoch is recorded on the
validation split without the forgotten class (``retain_val``: it holds no Df).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import fit
from unlearning.models.classifier import (
    PreciseBatchNorm,
    ValidationCadence,
    ValidationCurve,
    classifier_for_schedule,
    validation_cadence,
)


class Retrain(UnlearningMethod):
    name = "retrain"
    data_needed = "Dr only"

    def __init__(self, epochs: int | None = None, batch_size: int | None = None, augment: bool = True):
        self.epochs, self.batch_size, self.augment = epochs, batch_size, bool(augment)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        return train_from_scratch(model, data, context, "retain", self.epochs, self.batch_size, self.augment)


def train_from_scratch(model: nn.Module, data: UnlearningDataModule, context: MethodContext, split: str,
                       epochs: int | None = None, batch_size: int | None = None,
                       augment: bool = True) -> dict[str, Any]:
    """Re-initialise ``model`` from ``context.fresh_model()`` and train it on ``split`` with the source recipe.

    ``retain`` is retraining; the membership audit trains its shadow models on ``full`` (a
    bundle restricted to a random half of D). Returns the schedule it used.
    """
    schedule = dict(context.training)
    epochs = int(epochs if epochs is not None else schedule["epochs"])
    batch_size = int(batch_size or schedule.get("batch_size", data.batch_size))
    model.load_state_dict(context.fresh_model().state_dict())
    model.train()
    module = classifier_for_schedule(model, data.num_classes, schedule, epochs)
    loader = data.loader(split, augment=augment, shuffle=True, batch_size=batch_size)
    validation = "retain_val" if split == "retain" else "val"
    has_validation = len(data.indices(validation)) > 0
    curve = ValidationCurve()
    precise = int(schedule.get("precise_bn", 2000) or 0)
    callbacks = [PreciseBatchNorm(data.sample_loader(split, precise)), curve] if precise else [curve]
    every = validation_cadence(schedule)
    val_loader = data.loader(validation) if has_validation else None
    if val_loader is not None and every > 1:  # the last epoch validated; the random stream of every-epoch validation
        callbacks.append(ValidationCadence(val_loader, every))  # the loader validation itself iterates
    fit(module, context, epochs, train_dataloaders=loader, reload_dataloaders_every_n_epochs=0,
        val_dataloaders=val_loader, callbacks=callbacks, check_val_every_n_epoch=every)
    return {"epochs": epochs, "batch_size": batch_size, "lr": schedule["lr"], "augment": bool(augment),
            "milestones": list(schedule.get("milestones", [])), "schedule": schedule.get("schedule", "multistep"),
            "validate_every": every, "val_acc_per_epoch": curve.curve}
