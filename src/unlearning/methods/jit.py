"""JiT (Foster et al., 2024): zero-shot unlearning by smoothing the model around Df, Lipschitz-style.

Only Df is used. For each Df batch x (in order, no shuffling), ``N`` noisy copies
``x' = clip(x + N(0, sigma²))`` are drawn (clipped to the batch's own minimum and maximum);
the loss is the mean over copies of ``sum over samples of ||f(x) - f(x')|| / ||x - x'||``,
with ``f(x')`` computed without gradient, and one SGD step (no momentum) is taken per batch.
The model runs in training mode by default (``train_mode: true``), as in the reference code,
which never calls ``eval()`` on it: with batch norm, each of the 1 + N forward passes per batch
moves the running statistics towards the noisy copies. ``method.train_mode=false`` runs it in eval
mode instead (frozen statistics, no dropout); for ViT (layer norm, no dropout) the two are the same.
Zero-shot: it receives only Df (:class:`~unlearning.methods.zeroshot.ForgetOnly`), never Dr.

Defaults: N = 25, one epoch. sigma, learning rate and batch size depend on model and task
and live in ``conf/tuned/jit/<model>.yaml``: the JiT paper's ViT values (full-class
0.8 / 1.5, sub-class 1.5 / 0.5, random 0.5 / 0.1) and, for ResNet18, which the paper did not
use, its VGG values (0.5 / 3e-4, 0.01 / 3e-4, 0.01 / 3e-4). **Deviation**: the reference
zeroed gradients once before the loop, so each step applied the sum of all gradients so
far; here each step uses its own batch's gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unlearning.methods.base import MethodContext
from unlearning.methods.training import Phase, UnlearningModule, fit
from unlearning.methods.zeroshot import ForgetOnly, ZeroShotMethod
from unlearning.validate import boolean, positive_numbers


def lipschitz_loss(model: nn.Module, images: torch.Tensor, sigma: float, copies: int) -> torch.Tensor:
    """Mean over ``copies`` noisy copies of the summed ratios ||f(x)-f(x')|| / ||x-x'||."""
    low, high = images.min(), images.max()
    outputs = model(images)
    total = images.new_zeros(())
    for _ in range(copies):
        noisy = (images + torch.randn_like(images) * sigma).clamp(low, high)
        with torch.no_grad():
            noisy_outputs = model(noisy)
        inputs_distance = torch.linalg.vector_norm((images - noisy).flatten(1), dim=1)
        outputs_distance = torch.linalg.vector_norm((outputs - noisy_outputs).flatten(1), dim=1)
        total = total + (outputs_distance / inputs_distance).sum()
    return total / copies


class JiTModule(UnlearningModule):
    def __init__(self, model, forget, batch_size: int, sigma: float, copies: int, train_mode: bool, **options):
        super().__init__(model, **options)
        self.model_training_mode = bool(train_mode)
        self.forget, self.batch_size, self.sigma, self.copies = forget, int(batch_size), float(sigma), int(copies)

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("forget", self.forget, self.batch_size, shuffle=False)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        return lipschitz_loss(self.model, batch[0], self.sigma, self.copies)


class JiT(ZeroShotMethod):
    name = "jit"

    def __init__(self, sigma: float = 0.5, lr: float = 3e-4, copies: int = 25, batch_size: int = 128, epochs: int = 1,
                 train_mode: bool = True):
        positive_numbers("method.", sigma=sigma, lr=lr, copies=copies, batch_size=batch_size, epochs=epochs)
        self.sigma, self.lr, self.copies = float(sigma), float(lr), int(copies)
        self.batch_size, self.epochs = int(batch_size), int(epochs)
        self.train_mode = boolean(train_mode, "method.train_mode")

    def unlearn_zero_shot(self, model: nn.Module, request: ForgetOnly, context: MethodContext) -> dict[str, Any]:
        module = JiTModule(model, request.forget, self.batch_size, self.sigma, self.copies, self.train_mode,
                           optimizer="sgd", lr=self.lr, seed=context.seed, num_workers=request.num_workers)
        fit(module, context, self.epochs)
        return {"sigma": self.sigma, "lr": self.lr, "copies": self.copies, "batch_size": self.batch_size,
                "epochs": self.epochs, "train_mode": self.train_mode}
