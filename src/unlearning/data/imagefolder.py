"""A folder of class sub-folders (how PinsFaceRecognition is distributed), split by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from torchvision.datasets import ImageFolder

from unlearning.data.bundle import DatasetBundle, FileImages
from unlearning.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_imagefolder(
    root: str,
    image_size: int = 224,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    name: str = "imagefolder",
    **_: object,
) -> DatasetBundle:
    """Index ``root/<class>/<image>`` with torchvision's ImageFolder, then split per class."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"image folder {folder} does not exist. Point dataset.root=PATH at a folder with one "
            "sub-folder of images per class (e.g. PinsFaceRecognition's 105_classes_pins_dataset)."
        )
    try:
        index = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as error:
        raise UserError(
            f"image folder {folder} holds no usable images ({error}). It needs one sub-folder per "
            "class with .jpg/.png images inside."
        ) from None
    if len(index.classes) < 2:
        raise UserError(
            f"image folder {folder} has {len(index.classes)} class(es) ({', '.join(index.classes)}); "
            "unlearning needs at least two class sub-folders."
        )
    paths = np.array([path for path, _ in index.samples])
    labels = np.asarray(index.targets, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(index.classes))
    if counts.min() < 2:
        small = [index.classes[i] for i in np.flatnonzero(counts < 2)]
        raise UserError(
            f"class(es) {', '.join(small)} in {folder} have fewer than 2 images; each class needs "
            "at least 2 to be split into train and test."
        )
    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(labels)), test_size=test_fraction, random_state=split_seed, stratify=labels
        )
    except ValueError as error:
        raise UserError(
            f"cannot split {folder} into train and test with test_fraction={test_fraction}: {error}"
        ) from None
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return DatasetBundle(
        name=name,
        train_images=FileImages(paths[train_idx].tolist()),
        test_images=FileImages(paths[test_idx].tolist()),
        train_fine=labels[train_idx],
        test_fine=labels[test_idx],
        fine_names=list(index.classes),
        channels=3,
        native_size=image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
