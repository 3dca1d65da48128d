"""Vision Transformer from Hugging Face transformers, with a linear head on the CLS token."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from unlearning.errors import UserError


class ViTClassifier(nn.Module):
    """``ViTModel`` without its pooler, then ``Linear(hidden, num_classes)`` on the CLS token.

    Grey images are repeated to the channel count the ViT expects, so a pretrained
    3-channel ViT can also be fine-tuned on digits.
    """

    def __init__(self, vit: nn.Module, num_classes: int):
        super().__init__()
        self.vit = vit
        self.expected_channels = int(vit.config.num_channels)
        self.head = nn.Linear(vit.config.hidden_size, num_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[1] != self.expected_channels and pixels.shape[1] == 1:
            pixels = pixels.expand(-1, self.expected_channels, -1, -1)
        hidden = self.vit(pixel_values=pixels).last_hidden_state
        return self.head(hidden[:, 0])


def build_vit(
    num_classes: int,
    in_channels: int = 3,
    pretrained: str | None = None,
    config: Mapping | None = None,
    image_size: int = 224,
    **_: object,
) -> nn.Module:
    """A ViT from a hub id or local directory (``pretrained``), or from a ``ViTConfig``.

    The paper fine-tuned ``google/vit-base-patch16-224``; tests build a tiny ViT from the
    YAML config. Loading a hub id offline fails with a message saying what to do.
    """
    from transformers import ViTConfig, ViTModel

    if pretrained:
        try:
            vit = ViTModel.from_pretrained(str(pretrained), add_pooling_layer=False)
        except (OSError, ValueError) as error:
            where = "local directory" if Path(str(pretrained)).exists() else "hub id"
            raise UserError(
                f"cannot load the ViT {where} {pretrained!r}: {str(error).splitlines()[0]} "
                "Without internet, download it elsewhere (e.g. `huggingface-cli download "
                "google/vit-base-patch16-224 --local-dir vit-base`), copy the folder here and set "
                "model.pretrained=PATH, or set model.pretrained=null to build a ViT from model.config."
            ) from None
        return ViTClassifier(vit, num_classes)
    settings = dict(config or {})
    settings.setdefault("image_size", image_size)
    settings.setdefault("num_channels", in_channels)
    return ViTClassifier(ViTModel(ViTConfig(**settings), add_pooling_layer=False), num_classes)
