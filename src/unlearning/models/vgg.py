"""The JiT paper's "VGG16": torchvision's vgg11 followed by ``Linear(1000, num_classes)``.

The JiT reference code (jwf40/Zeroshot-Unlearning-At-Scale, ``models.VGG16``) reports its VGG16
results with this model: torchvision's ``vgg11()`` (no batch norm; five max-pools; adaptive
average pooling to 7x7; classifier 25088 -> 4096 -> 4096 -> 1000 with ReLU and dropout 0.5),
randomly initialised, and a linear layer from its 1000 ImageNet outputs to the dataset's classes.
It is built the same way here, under the same parameter names (``model.*``, ``fc.*``), so a
state dict saved by the reference loads into it unchanged. 133 M parameters, 102 M of them in
the first classifier layer.

The five max-pools halve the image five times, so it needs at least 32 px
(``conf/model/vgg.yaml`` sets 32: CIFAR as is, digits upsampled from 8 px). For a dataset that
is not RGB the first convolution takes the dataset's channel count (the only change; with 3
channels the model is exactly the reference's).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import vgg11

from unlearning.errors import UserError

#: The smallest input side the five 2x2 max-pools leave at least one pixel of.
MIN_SIZE = 32


class VGG11Classifier(nn.Module):
    """``fc(vgg11(x))``: the reference's VGG, whose output layer is ``fc`` (the feature probe reads its input)."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.model = vgg11()
        if in_channels != 3:
            first = self.model.features[0]
            self.model.features[0] = nn.Conv2d(in_channels, first.out_channels, kernel_size=first.kernel_size,
                                               stride=first.stride, padding=first.padding)
        self.fc = nn.Linear(1000, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if min(images.shape[-2:]) < MIN_SIZE:
            raise UserError(f"model=vgg needs images of at least {MIN_SIZE} px (five 2x2 max-pools), got "
                            f"{tuple(images.shape[-2:])}; set model.image_size=32 (its default).")
        return self.fc(self.model(images))


def build_vgg(num_classes: int, in_channels: int = 3, image_size: int | None = None, **_: object) -> nn.Module:
    """The reference's VGG for ``num_classes`` classes; refuses an image size the max-pools cannot take."""
    if image_size is not None and int(image_size) < MIN_SIZE:
        raise UserError(f"model=vgg needs images of at least {MIN_SIZE} px (five 2x2 max-pools); "
                        f"model.image_size={image_size}. Use 32 (its default).")
    return VGG11Classifier(int(num_classes), int(in_channels))
