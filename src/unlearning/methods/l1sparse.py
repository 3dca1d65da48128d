"""l1-sparse unlearning (Jia et al., NeurIPS 2023, "Model sparsity can simplify machine unlearning").

Fine-tune on Dr with an l1 penalty on the weights that fades out: the loss of a batch in epoch
``t`` (from 0) is ``CE + gamma_t * ||w||_1`` over every parameter, with
``gamma_t = gamma * (1 - t / (epochs - no_l1_epochs))`` while ``t < epochs - no_l1_epochs`` and
0 afterwards (:func:`l1_weight`); the model in training mode, shuffled Dr batches, no
augmentation.

Reference code: OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/FT.py`` (``FT_l1``, the
l1-sparse authors' own code). Defaults: 10 epochs, SGD lr 0.01, momentum 0.9, weight decay
5e-4, batch 256, ``no_l1_epochs`` 0 (its argument defaults and README). **gamma** (the
reference's ``--alpha``) has no published default: the README leaves ``--alpha ${alpha}`` to
the user. 5e-4 is ours, a starting point to sweep (``method.gamma=1e-4,5e-4,1e-3`` ...), not a
published value. **Deviations**: none otherwise (the reference's learning-rate milestones,
epochs 91 and 136, lie beyond its 10 epochs).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import Phase, UnlearningModule, fit
from unlearning.optim import optimizer_name
from unlearning.validate import positive_number, positive_numbers, whole_number


def l1_weight(gamma: float, epoch: int, epochs: int, no_l1_epochs: int = 0) -> float:
    """The reference's penalty weight in ``epoch`` (from 0): linear from ``gamma`` to 0 over ``epochs - no_l1_epochs``."""
    decay_epochs = epochs - no_l1_epochs
    if epoch >= decay_epochs:
        return 0.0
    return gamma * (1 - epoch / decay_epochs)


def l1_norm(model: nn.Module) -> torch.Tensor:
    """``||w||_1`` over every parameter of ``model`` (the reference's ``l1_regularization``)."""
    return sum(param.abs().sum() for param in model.parameters())


class L1SparseModule(UnlearningModule):
    def __init__(self, model: nn.Module, retain, batch_size: int, gamma: float, epochs: int, no_l1_epochs: int,
                 **options):
        super().__init__(model, **options)
        self.retain, self.batch_size = retain, int(batch_size)
        self.gamma, self.epochs, self.no_l1_epochs = float(gamma), int(epochs), int(no_l1_epochs)

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("retain", self.retain, self.batch_size)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        loss = F.cross_entropy(self.model(images), labels)
        weight = l1_weight(self.gamma, self.current_epoch, self.epochs, self.no_l1_epochs)
        return loss + weight * l1_norm(self.model) if weight else loss


class L1Sparse(UnlearningMethod):
    name = "l1sparse"
    data_needed = "Dr only"

    def __init__(self, gamma: float = 5e-4, epochs: int = 10, no_l1_epochs: int = 0, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 256, optimizer: str = "sgd"):
        positive_numbers("method.", epochs=epochs, lr=lr, batch_size=batch_size)
        self.gamma = positive_number(gamma, "method.gamma", allow_zero=True,
                                     hint="It weighs the l1 penalty (the reference's --alpha; 0 = plain fine-tuning).")
        self.no_l1_epochs = whole_number(no_l1_epochs, "method.no_l1_epochs", minimum=0)
        if self.no_l1_epochs >= epochs:
            raise UserError(f"method.no_l1_epochs={no_l1_epochs} leaves no epoch with the l1 penalty out of "
                            f"method.epochs={epochs}; it must be smaller (0 = the penalty fades over every epoch).")
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        module = L1SparseModule(model, data.dataset("retain"), self.batch_size, self.gamma, self.epochs,
                                self.no_l1_epochs, seed=context.seed, num_workers=data.num_workers, **self.optimizer)
        fit(module, context, self.epochs)
        return {"gamma": self.gamma, "epochs": self.epochs, "no_l1_epochs": self.no_l1_epochs,
                "batch_size": self.batch_size,
                "gamma_by_epoch": [l1_weight(self.gamma, e, self.epochs, self.no_l1_epochs) for e in range(self.epochs)],
                **self.optimizer}
