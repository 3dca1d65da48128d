"""SCRUB (Kurmanji et al., NeurIPS 2023): the student moves away from the teacher on Df, stays close on Dr.

The original model is the frozen teacher; the model being unlearned is the student. Each
epoch is a pass of max-steps over Df (for the first ``max_steps`` epochs), minimising
``-KL(teacher || student)``, then a pass of min-steps over Dr, minimising
``gamma * CE + alpha * KL(teacher || student)``; KL at temperature ``kd_T`` as
``DistillKL`` (summed over classes, times T², averaged over the batch). Defaults are the
SCRUB paper's large-scale CIFAR settings (``large_scale_unlearning.ipynb``): SGD lr 5e-4,
momentum 0.9, weight decay 5e-4, 3 epochs, 2 max epochs, T = 4, gamma 0.99, alpha 0.001,
Df batches of 512 and Dr batches of 128, lr x 0.1 after epochs 3, 5 and 9 (so not within
the default 3 epochs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import Phase, UnlearningModule, fit
from unlearning.optim import optimizer_name
from unlearning.validate import positive_numbers


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the tempered softmaxes, summed over classes, times T², averaged over the batch."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="sum") * temperature**2 / student_logits.shape[0]


class ScrubModule(UnlearningModule):
    def __init__(self, model, teacher, forget, retain, *, max_steps: int, forget_batch_size: int,
                 retain_batch_size: int, temperature: float, gamma: float, alpha: float,
                 lr_decay_epochs: Sequence[int], lr_decay_rate: float, **options):
        super().__init__(model, frozen={"teacher": teacher}, **options)
        self.forget, self.retain = forget, retain
        self.max_steps, self.forget_batch_size, self.retain_batch_size = max_steps, forget_batch_size, retain_batch_size
        self.temperature, self.gamma, self.alpha = temperature, gamma, alpha
        self.lr_decay_epochs, self.lr_decay_rate = list(lr_decay_epochs), lr_decay_rate

    def phases(self, epoch: int) -> list[Phase]:
        phases = [Phase("max", self.forget, self.forget_batch_size)] if epoch < self.max_steps else []
        return phases + [Phase("min", self.retain, self.retain_batch_size)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        logits = self.model(images)
        with torch.no_grad():
            teacher = self.frozen["teacher"](images)
        divergence = distill_kl(logits, teacher, self.temperature)
        if phase == "max":
            return -divergence
        return self.gamma * F.cross_entropy(logits, labels) + self.alpha * divergence

    def on_train_epoch_start(self) -> None:
        # The reference's step schedule, with its 1-based epoch count: decay after each listed epoch.
        epoch = self.current_epoch + 1
        steps = sum(epoch > milestone for milestone in self.lr_decay_epochs)
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = self.lr * self.lr_decay_rate**steps


class SCRUB(UnlearningMethod):
    name = "scrub"

    def __init__(self, epochs: int = 3, max_steps: int = 2, lr: float = 5e-4, momentum: float = 0.9,
                 weight_decay: float = 5e-4, optimizer: str = "sgd", forget_batch_size: int = 512,
                 retain_batch_size: int = 128, temperature: float = 4.0, gamma: float = 0.99, alpha: float = 0.001,
                 lr_decay_epochs: Sequence[int] = (3, 5, 9), lr_decay_rate: float = 0.1):
        positive_numbers("method.", epochs=epochs, lr=lr, forget_batch_size=forget_batch_size,
                         retain_batch_size=retain_batch_size, temperature=temperature)
        self.epochs = int(epochs)
        self.options = dict(max_steps=int(max_steps), forget_batch_size=int(forget_batch_size),
                            retain_batch_size=int(retain_batch_size), temperature=float(temperature),
                            gamma=float(gamma), alpha=float(alpha), lr_decay_epochs=list(lr_decay_epochs),
                            lr_decay_rate=float(lr_decay_rate))
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        module = ScrubModule(model, context.original, data.dataset("forget"), data.dataset("retain"),
                             seed=context.seed, num_workers=data.num_workers, **self.options, **self.optimizer)
        fit(module, context, self.epochs)
        return {"epochs": self.epochs, **self.options, **self.optimizer}
