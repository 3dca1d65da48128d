"""scikit-learn's bundled handwritten digits: real 8x8 images, no download needed."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from unlearning.data.bundle import ArrayImages, DatasetBundle
from unlearning.errors import UserError

#: Documented coarse grouping of the ten digits, so that sub-class forgetting runs on the
#: embedded default: superclass k holds digits 2k and 2k+1 (five superclasses of two).
DIGIT_SUPERCLASSES: dict[str, list[int]] = {
    "zero_one": [0, 1],
    "two_three": [2, 3],
    "four_five": [4, 5],
    "six_seven": [6, 7],
    "eight_nine": [8, 9],
}


def build_digits(test_fraction: float = 0.2, split_seed: int = 0, **_: object) -> DatasetBundle:
    """The 1,797 digits with a fixed, seeded, stratified train/test split.

    Pixels (0..16 in scikit-learn) are scaled to 0..255 uint8 grey images so that the same
    torchvision transforms serve every dataset.
    """
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0 < fraction < 1:
        raise UserError(f"dataset.builder.test_fraction must lie strictly between 0 and 1, got {test_fraction!r} "
                        "(the share of the 1,797 digits held out as the test set; default 0.2).")
    digits = load_digits()
    pixels = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    coarse_of = np.zeros(10, dtype=np.int64)
    for coarse, members in enumerate(DIGIT_SUPERCLASSES.values()):
        coarse_of[members] = coarse
    train_pixels = pixels[train_idx]
    mean = float(train_pixels.mean() / 255.0)
    std = float(train_pixels.std() / 255.0)
    return DatasetBundle(
        name="digits",
        train_images=ArrayImages(train_pixels),
        test_images=ArrayImages(pixels[test_idx]),
        train_fine=labels[train_idx],
        test_fine=labels[test_idx],
        fine_names=[str(d) for d in range(10)],
        channels=1,
        native_size=8,
        mean=(mean,),
        std=(std,),
        train_coarse=coarse_of[labels[train_idx]],
        test_coarse=coarse_of[labels[test_idx]],
        coarse_names=list(DIGIT_SUPERCLASSES),
    )
