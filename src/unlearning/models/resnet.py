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


def _conv_bn_celu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                  padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
                         nn.BatchNorm2d(out_channels), nn.CELU(alpha=0.075))


class Residual(nn.Module):
    """``x + module(x)``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.module(x)


def build_resnet9(num_classes: int, in_channels: int = 3, **_: object) -> nn.Module:
    """ResNet-9 as Potion's code builds it (from the corrective-unlearning benchmark), for 32 px images.

    conv(64) -> conv(128, 5x5 stride 2) -> residual(2 x conv 128) -> conv(256) + max-pool ->
    residual(2 x conv 256) -> conv(128, 3x3, no padding) -> global max-pool -> Linear(128, C, no
    bias); every conv with batch norm and CELU(0.075). The spatial size halves twice and the last
    convolution needs 3 px, so inputs must be at least 12 px (CIFAR's 32: fine; 8 px digits: use
    ResNet18 or ``dataset.image_size=32``).
    """
    return nn.Sequential(
        _conv_bn_celu(in_channels, 64),
        _conv_bn_celu(64, 128, 5, 2, 2),
        Residual(nn.Sequential(_conv_bn_celu(128, 128), _conv_bn_celu(128, 128))),
        nn.Sequential(_conv_bn_celu(128, 256), nn.MaxPool2d(2)),
        Residual(nn.Sequential(_conv_bn_celu(256, 256), _conv_bn_celu(256, 256))),
        nn.Sequential(_conv_bn_celu(256, 128, 3, 1, 0), nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten()),
        nn.Linear(128, num_classes, bias=False),
    )
