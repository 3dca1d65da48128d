"""The common shape every dataset builder returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image


class ImageSource(Sequence):
    """Read-only sequence of PIL images; labels are kept apart in :class:`DatasetBundle`.

    Keeping images and labels apart lets one set of images serve fine and coarse labels
    (CIFAR-100 vs CIFAR-20, sub-class forgetting) without copying anything.
    """

    def __getitem__(self, index: int) -> Image.Image:  # pragma: no cover - interface
        raise NotImplementedError


class ArrayImages(ImageSource):
    """Images held as a uint8 array (N, H, W) or (N, H, W, C), converted to PIL on access."""

    def __init__(self, array: np.ndarray):
        if array.dtype != np.uint8:
            raise TypeError("ArrayImages needs uint8 pixels")
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(self.array[int(index)])


class FileImages(ImageSource):
    """Images loaded lazily from files, so a large folder is never held in memory."""

    def __init__(self, paths: Sequence[str], mode: str = "RGB"):
        self.paths = list(paths)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        with Image.open(self.paths[int(index)]) as image:
            return image.convert(self.mode)


class SubsetImages(ImageSource):
    """The images of ``source`` at ``indices``, in that order (a shadow model's half of D)."""

    def __init__(self, source: ImageSource, indices: Sequence[int]):
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Image.Image:
        return self.source[int(self.indices[int(index)])]

    def fingerprint(self) -> str | None:
        """The parent's content digest plus the chosen indices (see :mod:`unlearning.fingerprint`)."""
        from unlearning.fingerprint import digest_array, image_source_digest

        parent = image_source_digest(self.source)
        return None if parent is None else f"subset:{parent}:{digest_array(self.indices)}"


@dataclass
class DatasetBundle:
    """Train and test images with their fine (and optional coarse) labels and class names.

    ``*_coarse`` labels and ``coarse_names`` exist only where the data carries a grouping
    of its classes (CIFAR-100's 20 superclasses, the documented digits grouping); they make
    sub-class forgetting possible.
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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_coarse(self) -> bool:
        return self.train_coarse is not None and self.coarse_names is not None

    def labels(self, kind: str, split: str) -> np.ndarray:
        """Labels of ``split`` ("train"/"test") of ``kind`` ("fine"/"coarse")."""
        if kind not in ("fine", "coarse"):
            raise ValueError(f"label kind must be 'fine' or 'coarse', got {kind!r}")
        if kind == "coarse" and not self.has_coarse:
            raise ValueError(f"dataset {self.name} has no coarse labels")
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
        """The same dataset with only the training samples at ``train_indices`` (the test set unchanged).

        A shadow model of a membership audit is trained on a random half of D: this bundle is
        that half, so "D" means the shadow's training set to every method and metric.
        """
        rows = np.asarray(train_indices, dtype=np.int64)
        return replace(self, train_images=SubsetImages(self.train_images, rows), train_fine=self.train_fine[rows],
                       train_coarse=None if self.train_coarse is None else self.train_coarse[rows])
