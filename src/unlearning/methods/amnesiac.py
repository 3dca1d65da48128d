"""Amnesiac unlearning (Graves et al., AAAI 2021), as in the bad-teacher/SSD reference code.

Every Df sample gets a random label other than its own (drawn once, from the run's seed),
and the model is trained on those relabelled samples together with Dr: Adam lr 1e-4,
3 epochs, shuffled batches of 128, no augmentation. For full-class and sub-class
forgetting "other than its own" is "other than the forgotten (super)class", exactly the
reference; for random forgetting it is the reference's random-forgetting variant.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import ConcatDataset

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.finetune import CrossEntropyTraining
from unlearning.methods.training import (
    Relabelled,
    fit,
    other_labels,
    seeded_generator,
)
from unlearning.optim import optimizer_name
from unlearning.validate import positive_numbers


class Amnesiac(UnlearningMethod):
    name = "amnesiac"

    def __init__(self, epochs: int = 3, lr: float = 1e-4, batch_size: int = 128, optimizer: str = "adam",
                 weight_decay: float = 0.0):
        positive_numbers("method.", epochs=epochs, lr=lr, batch_size=batch_size)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        wrong = other_labels(data.labels_of("forget"), data.num_classes, seeded_generator(context.seed, 2))
        dataset = ConcatDataset([Relabelled(data.dataset("forget"), wrong), data.dataset("retain")])
        module = CrossEntropyTraining(model, dataset, self.batch_size, seed=context.seed,
                                      num_workers=data.num_workers, **self.optimizer)
        fit(module, context, self.epochs)
        return {"epochs": self.epochs, "batch_size": self.batch_size, **self.optimizer}
