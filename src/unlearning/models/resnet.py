"""ResNet18 for small images: torchvision's ResNet18 with the CIFAR stem."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


class GlobalAvgPool2d(nn.Module):
    """Mean over height and width, shaped like ``AdaptiveAvgPool2d(1)``'s output.

    The same numbers, but its backward pass is deterministic on CUDA, where
    ``AdaptiveAvgPool2d``'s backward refuses to run under ``trainer.deterministic=true``
    (``torch.use_deterministic_algorithms``). It has no parameters, so checkpoints are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1), keepdim=True)


def build_resnet18(num_classes: int, in_channels: int = 3, **_: object) -> nn.Module:
    """ResNet18 with a 3x3 stride-1 stem and no max-pool (the CIFAR variant).

    Stages 64/128/256/512, global average pooling and a linear head, as in the SSD paper's
    code; the ImageNet stem would shrink 32 px (or 8 px digits) images to nothing.
    """
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.avgpool = GlobalAvgPool2d()
    return model
