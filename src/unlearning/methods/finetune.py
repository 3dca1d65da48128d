"""Fine-tune: keep training the model on Dr only, hoping it forgets Df (catastrophic forgetting).

As the SSD reference code: plain SGD (momentum 0.9, weight decay 5e-4, constant learning
rate 0.02) for 5 epochs over Dr in shuffled batches of 64, without augmentation.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import Phase, UnlearningModule, fit
from unlearning.optim import optimizer_name
from unlearning.validate import positive_numbers


class CrossEntropyTraining(UnlearningModule):
    """Cross-entropy on one dataset, one shuffled pass per epoch."""

    def __init__(self, model: nn.Module, dataset, batch_size: int, **optimizer):
        super().__init__(model, **optimizer)
        self.dataset, self.batch_size = dataset, int(batch_size)

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("train", self.dataset, self.batch_size)]

    def loss(self, phase: str, batch):
        images, labels = batch[0], batch[1]
        return F.cross_entropy(self.model(images), labels)


class Finetune(UnlearningMethod):
    name = "finetune"

    def __init__(self, epochs: int = 5, lr: float = 0.02, momentum: float = 0.9, weight_decay: float = 5e-4,
                 batch_size: int = 64, optimizer: str = "sgd"):
        positive_numbers("method.", epochs=epochs, lr=lr, batch_size=batch_size)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        module = CrossEntropyTraining(model, data.dataset("retain"), self.batch_size, seed=context.seed,
                                      num_workers=data.num_workers, **self.optimizer)
        fit(module, context, self.epochs)
        return {"epochs": self.epochs, "batch_size": self.batch_size, **self.optimizer}
