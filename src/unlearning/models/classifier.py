"""One LightningModule for any backbone: cross-entropy training with the paper's recipe."""

from __future__ import annotations

import math
import time
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
        channels_last: bool = False,
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

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:  # the NHWC layout tensor cores prefer for convolutions
            self.model.to(memory_format=torch.channels_last)

    def on_fit_end(self) -> None:
        if self.hparams.channels_last:  # saved and evaluated in the usual layout
            self.model.to(memory_format=torch.contiguous_format)

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        """The batch in the model's memory layout (channels last when asked for)."""
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.model(self.layout(images))
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self.model(self.layout(images))
        self.val_acc(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), prog_bar=False, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(hp.optimizer, self.parameters(), hp.lr, hp.momentum, hp.weight_decay,
                                    key="optimizer")
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 0
        attached_epochs = self.trainer.max_epochs if self._trainer is not None else None
        epochs = max(1, int(hp.epochs or attached_epochs or 1))
        factor = learning_rate_factor(hp.schedule, hp.warmup_epochs, epochs, max(1, total // epochs),
                                      hp.milestones, hp.gamma)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def learning_rate_factor(schedule: str, warmup_epochs: int, epochs: int, steps_per_epoch: int,
                         milestones: Sequence[int] = (), gamma: float = 0.2):
    """The learning rate at optimiser step ``s`` as a fraction of the peak, updated every step.

    A linear warm-up from 0.1 over ``warmup_epochs`` epochs, then a cosine decay to zero at the
    last step, or steps of ``gamma`` at the ``milestones`` (epochs). Every step, not every epoch:
    a warm-up that jumps tenfold from one epoch to the next threw small models to chance accuracy
    in the epoch after it (digits, Fashion-MNIST folders; docs/recipe.md).
    """
    warm = int(warmup_epochs) * steps_per_epoch
    total = max(epochs * steps_per_epoch, warm + 1)
    marks = [int(m) * steps_per_epoch for m in milestones]

    def factor(step: int) -> float:
        ramp = 0.1 + 0.9 * step / warm if step < warm else 1.0
        if schedule == "cosine":
            decay = 1.0 if step < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))
        else:
            decay = gamma ** sum(step >= mark for mark in marks)
        return ramp * decay

    return factor


class ValidationCurve(L.Callback):
    """Records the validation accuracy of every epoch (``curve``, in %; None for an epoch that was not
    validated, see :func:`validation_cadence`) and, with ``keep_best``, a CPU copy of the weights of
    the best epoch so far.

    The curve is what shows a recipe's chaotic start or an unconverged end without a logger;
    it is stored in every published model's metadata (``val_acc_per_epoch``).
    """

    def __init__(self, monitor: str = "val/acc", keep_best: bool = False):
        self.monitor, self.keep_best = monitor, keep_best
        self.best, self.state, self.epoch = -1.0, None, -1
        self.curve: list[float | None] = []
        #: Seconds from the start of training to the end of each epoch's validation (time to accuracy).
        self.elapsed: list[float | None] = []
        self._start: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        while len(self.curve) < trainer.current_epoch:  # epochs not validated (validate_every > 1)
            self.curve.append(None)
            self.elapsed.append(None)
        self.curve.append(round(100.0 * float(value), 2))
        self.elapsed.append(round(time.perf_counter() - self._start, 2) if self._start is not None else None)
        if float(value) > self.best:
            self.best, self.epoch = float(value), trainer.current_epoch
            if self.keep_best:
                self.state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}


class ValidationCadence(L.Callback):
    """Validation every ``every`` epochs and after the last one, without changing the trained weights.

    The trainer is built with ``check_val_every_n_epoch=every``; on the last epoch this sets it to 1,
    so that the kept model is validated whatever the number of epochs. On an epoch that is not
    validated, it starts and drops an iterator of the validation loader, as the skipped validation
    would have: a DataLoader draws its base seed from torch's global generator whenever an iterator
    starts, and training's shuffling and batch augmentation draw from that same generator. Without
    it, a skipped validation would shift every later random number, and a model validated every 4th
    epoch would not be the model validated every epoch, although both carry one registry identity
    (tests/test_validation_cadence.py compares the weights bit for bit).
    """

    def __init__(self, loader, every: int):
        self.loader, self.every = loader, int(every)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= (trainer.max_epochs or 0):
            trainer.check_val_every_n_epoch = 1  # Lightning reads it at the epoch's end: the last is validated

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if self.loader is not None and (trainer.current_epoch + 1) % self.every and not last:
            iter(self.loader)  # the draw the skipped validation would have made; no batch is loaded


class PreciseBatchNorm(L.Callback):
    """After the last epoch, batch norm's running statistics become exact averages over training images.

    During training they are exponential averages of the last few augmented batches, so the
    evaluated model depends on which batches came last: measured on a Fashion-MNIST image folder
    (16 px, rotation and crop) the validation accuracy moved by up to 2 points between those
    statistics and exact ones while the learning rate was near zero (docs/recipe.md). Recomputed
    here over ``loader`` (un-augmented training images, at most a few thousand: enough for a mean
    and a variance per channel) in one no-grad pass, before the last validation; the weights are
    untouched. Cumulative averages (``momentum=None``), then each layer's momentum is restored.
    """

    def __init__(self, loader):
        self.loader = loader

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        # the last step of the last epoch: Lightning validates after it, before on_train_epoch_end
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if self.loader is None or not last_batch or trainer.current_epoch + 1 < trainer.max_epochs:
            return
        recompute_batch_norm(pl_module.model, self.loader, pl_module.device)


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, loader, device: torch.device) -> None:
    """Replace every batch-norm layer's running mean and variance by their averages over ``loader``."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    try:
        for images, _ in loader:
            model(images.to(device, non_blocking=True))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)


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
        channels_last=bool(schedule.get("channels_last", False)),
    )


def training_settings(dataset_training: Mapping, model_training: Mapping | None) -> dict:
    """The dataset's schedule, with the model's own settings (e.g. ViT fine-tuning) on top."""
    merged = dict(dataset_training)
    merged.update(dict(model_training or {}))
    return merged


#: Schedule settings that do not change the trained weights, only what is measured along the way:
#: left out of every registry identity (a model validated every 4th epoch is the model validated every epoch).
NOT_IN_IDENTITY = ("validate_every",)


def identity_settings(settings: Mapping) -> dict:
    """``settings`` without the keys that cannot change the trained weights (:data:`NOT_IN_IDENTITY`)."""
    return {key: value for key, value in settings.items() if key not in NOT_IN_IDENTITY}


def validation_cadence(settings: Mapping) -> int:
    """Validate every ``validate_every`` epochs (default 1), and always after the last epoch.

    Validation reads the validation split with a forward pass; at the benchmark's 2,000 validation
    images an epoch it is about a tenth of the training time on a CPU (docs/performance.md). Only
    the validated epochs have a point on the curve; the last epoch, the kept model, always has one
    (:class:`ValidationCadence`).
    """
    every = settings.get("validate_every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UserError(f"dataset.training.validate_every must be a whole number of epochs >= 1 (got {every!r}): "
                        "1 validates after every epoch, 4 after every 4th; the last epoch is always validated.")
    return every
