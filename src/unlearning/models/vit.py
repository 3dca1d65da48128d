"""Vision Transformer from Hugging Face transformers, with a linear head on the CLS token."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

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
        vit = _load_pretrained(str(pretrained))
        return ViTClassifier(vit, num_classes)
    settings = dict(config or {})
    settings.setdefault("image_size", image_size)
    settings.setdefault("num_channels", in_channels)
    return ViTClassifier(ViTModel(ViTConfig(**settings), add_pooling_layer=False), num_classes)


def _load_pretrained(name: str) -> nn.Module:
    """A pretrained ViTModel from a local folder, the Hugging Face cache, or the hub when it is reachable.

    Local files are tried first without any network access; the hub only when a quick
    connection test succeeds, so that an offline machine gets the message at once instead
    of after the hub client's retries (about 40 s).
    """
    from transformers import ViTModel

    try:
        return ViTModel.from_pretrained(name, add_pooling_layer=False, local_files_only=True)
    except (OSError, ValueError) as error:
        local_error = error
    if _looks_local(name) or not _hub_reachable():
        raise _cannot_load(name, local_error)
    try:
        return ViTModel.from_pretrained(name, add_pooling_layer=False)
    except (OSError, ValueError) as error:
        raise _cannot_load(name, error) from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(key) for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows; let the hub client try
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _looks_local(name: str) -> bool:
    return Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))


def _cannot_load(name: str, error: BaseException) -> UserError:
    where = "local directory" if _looks_local(name) else "hub id"
    if _looks_local(name) and not Path(name).expanduser().exists():
        reason = "it does not exist."
    else:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return UserError(
        f"cannot load the ViT {where} {name!r}: {reason} "
        "Without internet, download it elsewhere (e.g. `huggingface-cli download "
        "google/vit-base-patch16-224 --local-dir vit-base`), copy the folder here and set "
        "model.pretrained=PATH, or set model.pretrained=null to build a ViT from model.config."
    )
