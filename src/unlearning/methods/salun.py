"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to the salient weights.

1. Saliency: the absolute gradient, summed over Df batches, of the forget loss ``-CE`` with
   the model in eval mode; the mask keeps the ``mask_ratio`` fraction of all weights with
   the largest saliency (one global ranking over every parameter tensor).
2. Each epoch: a pass over Df with labels drawn uniformly at random (any class, drawn anew
   for every batch), then a pass over Dr with the true labels; cross-entropy, SGD. Only
   masked-in weights change: gradients are multiplied by the mask and masked-out weights
   are put back after every step (so weight decay and momentum cannot move them either).

Defaults are the official repository's CIFAR-10 example (``Classification/README.md``):
mask 0.5, 10 epochs, lr 0.013, momentum 0.9, weight decay 5e-4, batch 256; its CIFAR-10
code path runs the Df pass before the Dr pass, as here. **Deviations**: none from the
current official code; earlier versions of its mask script kept the *least* salient
weights and took optimiser steps while accumulating the saliency, both fixed upstream.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import Phase, UnlearningModule, fit
from unlearning.optim import optimizer_name
from unlearning.validate import positive_numbers


def saliency(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """|sum over batches of the gradient of -CE| per parameter, eval mode, ``.grad`` untouched."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    device = named[0][1].device
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named}
    was_training = model.training
    model.eval()
    try:
        for images, labels in batches:
            with torch.enable_grad():
                loss = -F.cross_entropy(model(images.to(device)), labels.to(device))
                grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            for (name, _), grad in zip(named, grads, strict=True):
                if grad is not None:
                    sums[name] += grad.float()
    finally:
        model.train(was_training)
    return {name: value.abs() for name, value in sums.items()}


def top_fraction_mask(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the ``fraction`` of all entries with the largest scores (one global ranking)."""
    flat = torch.cat([value.flatten() for value in scores.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    count = int(flat.numel() * fraction)
    keep[torch.argsort(flat, descending=True, stable=True)[:count]] = True
    masks, offset = {}, 0
    for name, value in scores.items():
        masks[name] = keep[offset: offset + value.numel()].view_as(value)
        offset += value.numel()
    return masks


class SalUnModule(UnlearningModule):
    def __init__(self, model, forget, retain, num_classes: int, mask_ratio: float, batch_size: int, **options):
        super().__init__(model, **options)
        self.forget, self.retain, self.num_classes = forget, retain, int(num_classes)
        self.mask_ratio, self.batch_size = float(mask_ratio), int(batch_size)
        self.masks: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def on_fit_start(self) -> None:
        loader = DataLoader(self.forget, batch_size=self.batch_size, num_workers=self.num_workers)
        masks = top_fraction_mask(saliency(self.model, loader), self.mask_ratio)
        masks = self.trainer.strategy.broadcast({k: v.cpu() for k, v in masks.items()}, src=0)
        params = dict(self.model.named_parameters())
        self.masks = {name: mask.to(params[name].device) for name, mask in masks.items()}
        self.anchor = {name: params[name].detach().clone() for name in self.masks}

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("forget", self.forget, self.batch_size), Phase("retain", self.retain, self.batch_size)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        if phase == "forget":
            labels = torch.randint(0, self.num_classes, labels.shape, device=labels.device)
        return F.cross_entropy(self.model(images), labels)

    def on_before_optimizer_step(self, optimizer) -> None:
        for name, param in self.model.named_parameters():
            if param.grad is not None and name in self.masks:
                param.grad.mul_(self.masks[name])

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        for name, param in self.model.named_parameters():
            if name in self.masks:
                param.copy_(torch.where(self.masks[name], param, self.anchor[name]))

    def summary(self) -> dict[str, Any]:
        kept = sum(int(mask.sum()) for mask in self.masks.values())
        total = sum(mask.numel() for mask in self.masks.values())
        return {"salient_parameters": kept, "parameters_total": total}


class SalUn(UnlearningMethod):
    name = "salun"

    def __init__(self, mask_ratio: float = 0.5, epochs: int = 10, lr: float = 0.013, momentum: float = 0.9,
                 weight_decay: float = 5e-4, batch_size: int = 256, optimizer: str = "sgd"):
        positive_numbers("method.", mask_ratio=mask_ratio, epochs=epochs, lr=lr, batch_size=batch_size)
        if mask_ratio > 1:
            raise UserError(f"method.mask_ratio is the fraction of weights SalUn may change, in (0, 1]; got {mask_ratio}.")
        self.mask_ratio, self.epochs, self.batch_size = float(mask_ratio), int(epochs), int(batch_size)
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        module = SalUnModule(model, data.dataset("forget"), data.dataset("retain"), data.num_classes, self.mask_ratio,
                             self.batch_size, seed=context.seed, num_workers=data.num_workers, **self.optimizer)
        fit(module, context, self.epochs)
        return {"mask_ratio": self.mask_ratio, "epochs": self.epochs, "batch_size": self.batch_size,
                **self.optimizer, **module.summary()}
