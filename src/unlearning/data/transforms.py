"""The SSD paper's transforms, sized to the model: a batch at a time on tensors, or per image for large folders.

Training from scratch augments (a random crop with zero padding, a horizontal flip, a rotation
with zero fill, as torchvision's ``RandomCrop``, ``RandomHorizontalFlip``, ``RandomRotation``);
unlearning and evaluation only normalise. Small datasets are held as one ``uint8`` tensor at
the model's size and go through :class:`BatchTransform`, which draws every image's crop, flip
and angle at once and samples all of them in one gather, on whatever device the batch is on:
a per-image PIL pipeline costs more than the model at these sizes on a CPU, and starves a GPU.
Folders too large for memory keep the per-image path (:func:`build_transform`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torchvision import transforms as T


def crop_padding(augment: Mapping | None, size: int) -> int:
    """RandomCrop's padding at ``size``: ``crop_padding`` is given at 32 px and scales with the image.

    8 px digits and 224 px ViT inputs so see the same relative shift as 32 px CIFAR images with padding 4.
    """
    padding = int((augment or {}).get("crop_padding", 0) or 0)
    return max(1, round(padding * size / 32)) if padding else 0


def build_transform(
    mean: tuple[float, ...],
    std: tuple[float, ...],
    native_size: int,
    image_size: int | None,
    augment: Mapping | None = None,
) -> T.Compose:
    """Per image, for sources that are not held in memory: resize (when needed), augment (optional), normalise."""
    size = int(image_size or native_size)
    steps: list = []
    if size != native_size:
        steps.append(T.Resize((size, size), antialias=True))
    if augment:
        padding = crop_padding(augment, size)
        if padding:
            steps.append(T.RandomCrop(size, padding=padding))
        if augment.get("hflip", False):
            steps.append(T.RandomHorizontalFlip())
        rotation = float(augment.get("rotation", 0) or 0)
        if rotation:
            steps.append(T.RandomRotation(rotation))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class BatchTransform:
    """uint8 images (B, C, H, W) -> normalised float32, optionally augmented, a whole batch at once.

    The augmentation has the per-image path's distribution: each image gets its own crop offset
    (uniform over the padded frame), flip (probability 1/2) and angle (uniform in
    [-rotation, rotation], about the centre, nearest neighbour), applied in that order with
    zeros where an image has no pixel. The three are composed into one map from output to
    source pixels, so a batch is sampled once. Randomness comes from torch's generator on the
    batch's device (seeded runs repeat).
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], augment: Mapping | None = None,
                 size: int | None = None):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        augment = dict(augment or {})
        self.padding = crop_padding(augment, int(size)) if size else int(augment.get("crop_padding", 0) or 0)
        self.hflip = bool(augment.get("hflip", False))
        self.rotation = float(augment.get("rotation", 0) or 0)

    @property
    def augments(self) -> bool:
        return bool(self.padding or self.hflip or self.rotation)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> (x - mean) / std per channel (ToTensor + Normalize)."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float().div_(255.0) - mean) / std

    def __call__(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        if augment and self.augments and len(images):
            images = self.augment(images)
        return self.normalise(images)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Crop (zero padding), flip, rotate (zero fill) every image with its own draw; uint8 in, uint8 out."""
        b, c, h, w = images.shape
        device = images.device
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
        ys, xs = ys.expand(b, h, w), xs.expand(b, h, w)
        valid = torch.ones(b, h, w, dtype=torch.bool, device=device)
        if self.rotation:
            # output pixel p shows the pre-rotation pixel R^-1 (p - centre) + centre (PIL's rotate, centre w/2, h/2)
            angle = (torch.rand(b, device=device) * 2 - 1) * math.radians(self.rotation)
            cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
            cy, cx = h / 2 - 0.5, w / 2 - 0.5
            dy, dx = ys - cy, xs - cx
            xs, ys = cos * dx - sin * dy + cx, sin * dx + cos * dy + cy
            xs, ys = xs.round(), ys.round()
            valid &= (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
        if self.hflip:
            flip = torch.rand(b, device=device) < 0.5
            xs = torch.where(flip.view(b, 1, 1), (w - 1) - xs, xs)
        if self.padding:
            p = self.padding
            oy = torch.randint(0, 2 * p + 1, (b, 1, 1), device=device).float() - p
            ox = torch.randint(0, 2 * p + 1, (b, 1, 1), device=device).float() - p
            ys, xs = ys + oy, xs + ox
            valid &= (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
        index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).long().view(b, 1, h * w).expand(b, c, h * w)
        out = images.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)
        return out * valid.view(b, 1, h, w).to(out.dtype)

    def __repr__(self) -> str:
        return (f"BatchTransform(mean={self.mean}, std={self.std}, padding={self.padding}, hflip={self.hflip}, "
                f"rotation={self.rotation:g})")
