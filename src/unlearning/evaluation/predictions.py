"""Batched forward passes that return logits and labels on the CPU."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and labels of every sample of ``loader``, in loader order.

    The model runs in eval mode on its own device; its mode is restored afterwards.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for images, targets in loader:
            logits.append(model(images.to(device, non_blocking=True)).float())
            labels.append(torch.as_tensor(targets))
    finally:
        model.train(was_training)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits).cpu(), torch.cat(labels).cpu()
