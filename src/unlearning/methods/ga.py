"""Gradient ascent ("GA", also "NegGrad"): raise the cross-entropy of Df, nothing else.

Each epoch is one shuffled pass over Df in batches of ``batch_size`` with the loss ``-CE``
(the model in training mode); Dr is never read. As the SalUn / l1-sparse repository
(OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/GA.py``; its README runs
``--unlearn GA --unlearn_epochs 5 --unlearn_lr 1e-4``, its argument defaults give SGD momentum
0.9, weight decay 5e-4 and batches of 256): 5 epochs, SGD lr 1e-4, momentum 0.9, weight decay
5e-4, batch 256, no augmentation. **Deviations**: none. Nothing bounds the ascent: a larger
learning rate or more epochs soon destroy Dr too (docs/methods.md has what it does on digits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import Phase, UnlearningModule, fit
from unlearning.optim import optimizer_name
from unlearning.validate import positive_numbers


class GradientAscentModule(UnlearningModule):
    """``-CE`` on Df, one shuffled pass per epoch."""

    def __init__(self, model: nn.Module, forget, batch_size: int, **options):
        super().__init__(model, **options)
        self.forget, self.batch_size = forget, int(batch_size)

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("forget", self.forget, self.batch_size)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        return -F.cross_entropy(self.model(images), labels)


class GradientAscent(UnlearningMethod):
    name = "ga"
    data_needed = "Df only"

    def __init__(self, epochs: int = 5, lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 5e-4,
                 batch_size: int = 256, optimizer: str = "sgd"):
        positive_numbers("method.", epochs=epochs, lr=lr, batch_size=batch_size)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        forget = data.dataset("forget")
        module = GradientAscentModule(model, forget, self.batch_size, seed=context.seed,
                                      num_workers=data.num_workers, **self.optimizer)
        fit(module, context, self.epochs)
        return {"epochs": self.epochs, "batch_size": self.batch_size, "forget_samples": len(forget), **self.optimizer}
