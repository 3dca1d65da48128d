"""One LightningModule for any backbone: cross-entropy training with the paper's recipe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from unlearning.errors import UserError
from unlearning.optim import build_optimizer, optimizer_name

#: Learning-rate schedules after the optional warm-up.
SCHEDULES = ("multistep", "cosine")


class ImageClassifier(L.LightningModule):
    """Wraps a backbone ``nn.Module`` that maps images to logits.

    The optimiser is SGD with momentum and weight decay (or Adam; both from
    :func:`unlearning.optim.build_optimizer`), the schedule a MultiStepLR with an optional
    linear warm-up epoch (the SSD paper's training recipe), or a cosine decay to zero over
    ``epochs`` after the warm-up (``schedule="cosine"``); all from YAML.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        milestones: Sequence[int] = (),
        gamma: float = 0.2,
        warmup_epochs: int = 0,
        optimizer: str = "sgd",
        schedule: str = "multistep",
        epochs: int | None = None,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise UserError(f"training schedule {schedule!r} is unknown: valid schedules are {', '.join(SCHEDULES)} "
                            "(dataset.training.schedule).")
        optimizer_name(optimizer, key="optimizer")
        if schedule == "cosine" and epochs is None:
            raise ValueError("the cosine schedule needs the number of epochs")
        self.save_hyperparameters(ignore=["backbone"])
        self.model = backbone
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self.model(images)
        self.val_acc(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), prog_bar=False, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(hp.optimizer, self.parameters(), hp.lr, hp.momentum, hp.weight_decay,
                                    key="optimizer")
        schedulers = torch.optim.lr_scheduler
        warmup = (schedulers.LinearLR(optimizer, start_factor=0.1, total_iters=hp.warmup_epochs)
                  if hp.warmup_epochs else None)
        if hp.schedule == "cosine":
            # a run shorter than the warm-up (a quick retrain.epochs=1) still gets a valid schedule
            decay = schedulers.CosineAnnealingLR(optimizer, T_max=max(1, hp.epochs - hp.warmup_epochs))
            scheduler = decay if warmup is None else schedulers.SequentialLR(
                optimizer, [warmup, decay], milestones=[hp.warmup_epochs])
        else:
            decay = schedulers.MultiStepLR(optimizer, milestones=list(hp.milestones), gamma=hp.gamma)
            scheduler = decay if warmup is None else schedulers.ChainedScheduler([warmup, decay], optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def classifier_for_schedule(backbone: nn.Module, num_classes: int, schedule: Mapping, epochs: int) -> ImageClassifier:
    """The module that trains ``backbone`` from scratch with a ``dataset.training`` schedule (train.py, retrain)."""
    return ImageClassifier(
        backbone,
        num_classes=num_classes,
        lr=schedule["lr"],
        momentum=schedule.get("momentum", 0.9),
        weight_decay=schedule.get("weight_decay", 5e-4),
        milestones=schedule.get("milestones", []),
        gamma=schedule.get("gamma", 0.2),
        warmup_epochs=schedule.get("warmup_epochs", 0),
        schedule=schedule.get("schedule", "multistep"),
        epochs=epochs,
    )


def training_settings(dataset_training: Mapping, model_training: Mapping | None) -> dict:
    """The dataset's schedule, with the model's own settings (e.g. ViT fine-tuning) on top."""
    merged = dict(dataset_training)
    merged.update(dict(model_training or {}))
    return merged
