"""torchvision transforms as the SSD paper used them, sized to the model on the fly."""

from __future__ import annotations

from collections.abc import Mapping

from torchvision import transforms as T


def build_transform(
    mean: tuple[float, ...],
    std: tuple[float, ...],
    native_size: int,
    image_size: int | None,
    augment: Mapping | None = None,
) -> T.Compose:
    """Resize (only when the model needs another size), optional augmentation, normalise.

    Training from scratch uses ``augment`` (RandomCrop with padding, RandomHorizontalFlip,
    RandomRotation); unlearning and evaluation pass ``augment=None``. Images are resized
    per sample, never materialised for the whole dataset.
    """
    size = int(image_size or native_size)
    steps: list = []
    if size != native_size:
        steps.append(T.Resize((size, size), antialias=True))
    if augment:
        padding = int(augment.get("crop_padding", 0) or 0)
        if padding:
            # Padding scales with the image so that 8 px digits and 224 px ViT inputs see
            # the same relative shift as 32 px CIFAR images with padding 4.
            steps.append(T.RandomCrop(size, padding=max(1, round(padding * size / 32))))
        if augment.get("hflip", False):
            steps.append(T.RandomHorizontalFlip())
        rotation = float(augment.get("rotation", 0) or 0)
        if rotation:
            steps.append(T.RandomRotation(rotation))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)
