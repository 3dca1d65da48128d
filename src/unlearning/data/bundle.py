"""The common shape every dataset builder returns, and how its images are held.

Images are kept apart from labels (:class:`DatasetBundle`), so one set of images serves fine
and coarse labels (CIFAR-100 vs CIFAR-20, sub-class forgetting) without copying anything.
An image source can hand out all its images at once as one ``uint8`` tensor at the model's
size (:meth:`ImageSource.pixels`): small datasets (digits, Fashion-MNIST, CIFAR) are then held
as tensors and transformed a batch at a time (:mod:`unlearning.data.transforms`); a source
too large for memory (a big image folder) is read and transformed one image at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

#: The most memory a source's images may take as one tensor at the model's size (above: per image).
DEFAULT_MEMORY_BYTES = 4 * 2**30


def resized(image: Image.Image, size: int) -> Image.Image:
    """``image`` at ``size`` x ``size``, as torchvision's ``Resize((size, size), antialias=True)`` does on PIL."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.BILINEAR)


def to_chw(array: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 pixels as a (N, C, H, W) tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2).contiguous()


def stack_images(source: ImageSource, size: int, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Every image of ``source`` (or those at ``rows``) opened once, resized, stacked as (N, C, H, W) uint8."""
    rows = range(len(source)) if rows is None else rows
    arrays = [np.asarray(resized(source[int(i)], size)) for i in rows]
    if not arrays:
        return torch.empty(0, 1, size, size, dtype=torch.uint8)
    return to_chw(np.stack(arrays))


class ImageSource(Sequence):
    """Read-only sequence of PIL images; labels are kept apart in :class:`DatasetBundle`."""

    def __getitem__(self, index: int) -> Image.Image:  # pragma: no cover - interface
        raise NotImplementedError

    def pixels(self, size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> torch.Tensor | None:
        """All images as one (N, C, size, size) uint8 tensor, or None when they should not be held in memory.

        The default opens every image once (a folder of files is read here, one time); a source
        whose images would take more than ``memory_bytes`` at ``size`` answers None.
        """
        if len(self) == 0:
            return None
        channels = np.asarray(self[0]).shape[2] if np.asarray(self[0]).ndim == 3 else 1
        if len(self) * channels * size * size > memory_bytes:
            return None
        return stack_images(self, size)


class ArrayImages(ImageSource):
    """Images held as a uint8 array (N, H, W) or (N, H, W, C), converted to PIL on access."""

    def __init__(self, array: np.ndarray):
        if array.dtype != np.uint8:
            raise TypeError("ArrayImages needs uint8 pixels")
        self.array = array
        self._pixels: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(self.array[int(index)])

    def pixels(self, size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> torch.Tensor | None:
        """The array as a tensor (no copy at the native size; resized once, image by image, otherwise)."""
        if size not in self._pixels:
            channels = 1 if self.array.ndim == 3 else self.array.shape[3]
            if len(self.array) * channels * size * size > memory_bytes:
                return None
            native = self.array.shape[1] == size and self.array.shape[2] == size
            self._pixels[size] = to_chw(self.array) if native else stack_images(self, size)
        return self._pixels[size]


class FileImages(ImageSource):
    """Images loaded lazily from files, so a large folder is never held in memory unless it fits."""

    def __init__(self, paths: Sequence[str], mode: str = "RGB"):
        self.paths = list(paths)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        with Image.open(self.paths[int(index)]) as image:
            return image.convert(self.mode)


class SubsetImages(ImageSource):
    """The images of ``source`` at ``indices``, in that order (a validation split, a subset, a shadow's half)."""

    def __init__(self, source: ImageSource, indices: Sequence[int]):
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Image.Image:
        return self.source[int(self.indices[int(index)])]

    def pixels(self, size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> torch.Tensor | None:
        """Rows of the parent's tensor when the parent holds its images cheaply; else this subset's images only."""
        if isinstance(self.source, ArrayImages | SubsetImages):
            whole = self.source.pixels(size, memory_bytes)
            if whole is not None:
                return whole[torch.from_numpy(self.indices)]
        return super().pixels(size, memory_bytes)

    def fingerprint(self) -> str | None:
        """The parent's content digest plus the chosen indices (see :mod:`unlearning.fingerprint`)."""
        from unlearning.fingerprint import digest_array, image_source_digest

        parent = image_source_digest(self.source)
        return None if parent is None else f"subset:{parent}:{digest_array(self.indices)}"


#: The three sides of a dataset: what the model trains on (D), what selects and tunes, what reports.
SIDES = ("train", "val", "test")


@dataclass
class DatasetBundle:
    """Train, validation and test images with their fine (and optional coarse) labels and class names.

    ``val_*`` is the validation split: training data held out from D (seeded, stratified; see
    :mod:`unlearning.data.selection`) that selects epochs, tunes defaults and gives methods an
    estimate of unseen-data accuracy. The test split is read only to report. A builder returns
    the dataset's own train/test split without validation; the data module holds the
    validation split out.

    ``*_coarse`` labels and ``coarse_names`` exist only where the data carries a grouping
    of its classes (CIFAR-100's 20 superclasses, the documented digits and Fashion-MNIST
    groupings); they make sub-class forgetting possible.
    """

    name: str
    train_images: ImageSource
    test_images: ImageSource
    train_fine: np.ndarray
    test_fine: np.ndarray
    fine_names: list[str]
    channels: int
    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_coarse: np.ndarray | None = None
    test_coarse: np.ndarray | None = None
    coarse_names: list[str] | None = None
    val_images: ImageSource | None = None
    val_fine: np.ndarray | None = None
    val_coarse: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_coarse(self) -> bool:
        return self.train_coarse is not None and self.coarse_names is not None

    @property
    def has_validation(self) -> bool:
        return self.val_images is not None and self.val_fine is not None

    def images(self, side: str) -> ImageSource:
        """The images of ``side`` ("train", "val" or "test")."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
        if side == "val" and not self.has_validation:
            raise ValueError(f"dataset {self.name} has no validation split")
        return getattr(self, f"{side}_images")

    def labels(self, kind: str, split: str) -> np.ndarray:
        """Labels of ``split`` ("train"/"val"/"test") of ``kind`` ("fine"/"coarse")."""
        if kind not in ("fine", "coarse"):
            raise ValueError(f"label kind must be 'fine' or 'coarse', got {kind!r}")
        if kind == "coarse" and not self.has_coarse:
            raise ValueError(f"dataset {self.name} has no coarse labels")
        if split == "val" and not self.has_validation:
            return np.empty(0, dtype=np.int64)
        return getattr(self, f"{split}_{kind}")

    def names(self, kind: str) -> list[str]:
        return self.fine_names if kind == "fine" else list(self.coarse_names or [])

    def coarse_of_fine(self) -> dict[int, int]:
        """Superclass of every fine class, read off the training labels."""
        if not self.has_coarse:
            raise ValueError(f"dataset {self.name} has no coarse labels")
        pairs = np.unique(np.stack([self.train_fine, self.train_coarse], axis=1), axis=0)
        return {int(fine): int(coarse) for fine, coarse in pairs}

    def restricted_to(self, train_indices: Sequence[int]) -> DatasetBundle:
        """The same dataset with only the training samples at ``train_indices`` (validation and test unchanged).

        A shadow model of a membership audit is trained on a random half of D: this bundle is
        that half, so "D" means the shadow's training set to every method and metric.
        """
        rows = np.asarray(train_indices, dtype=np.int64)
        return replace(self, train_images=SubsetImages(self.train_images, rows), train_fine=self.train_fine[rows],
                       train_coarse=None if self.train_coarse is None else self.train_coarse[rows])
