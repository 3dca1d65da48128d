"""Batched forward passes that return logits, labels and (optionally) penultimate features on the CPU."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from unlearning.progress import progress


def feature_layer(model: nn.Module) -> nn.Linear:
    """The model's output layer: the last ``nn.Linear`` it registers (ResNet's ``fc``, our ViT's ``head``).

    Its *input* is the penultimate representation that a linear probe reads.
    """
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear output layer to read features before")
    return last


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, features: bool = False, show_progress: bool = False,
            description: str = "predictions") -> tuple[torch.Tensor, ...]:
    """Logits (float32) and labels of every sample of ``loader``, in loader order.

    With ``features=True`` also the input of the output layer (see :func:`feature_layer`),
    captured by a forward hook in the same pass: the probe costs no extra forward pass.
    The model runs in eval mode on its own device; its mode is restored afterwards.
    ``show_progress``: a progress bar labelled ``description`` over the batches; callers ask for it
    on rank 0 only (evaluation runs there; the trainer's setting says so elsewhere).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels, captured = [], [], []
    hook = None
    if features:
        hook = feature_layer(model).register_forward_hook(
            lambda _module, inputs, _output: captured.append(inputs[0].detach().flatten(1).float().cpu()))
    try:
        for images, targets in progress(loader, description, show_progress):
            logits.append(model(images.to(device, non_blocking=True)).float())
            labels.append(torch.as_tensor(targets))
    finally:
        model.train(was_training)
        if hook is not None:
            hook.remove()
    if not logits:
        empty = (torch.empty(0, 0), torch.empty(0, dtype=torch.long))
        return (*empty, torch.empty(0, 0)) if features else empty
    result = (torch.cat(logits).cpu(), torch.cat(labels).cpu())
    return (*result, torch.cat(captured)) if features else result
