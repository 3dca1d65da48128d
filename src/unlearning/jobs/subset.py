"""A stratified fraction of a dataset, for ``debug=fast`` (``dataset.subset``): try a config in seconds.

Every class keeps at least ``minimum`` training and test images, so that every forgetting task,
the per-class accuracies and the membership attack still have something to work on; the choice
is seeded, so two debug runs see the same images. Only the images the builder returned are
sub-selected (no copy): :class:`~unlearning.data.bundle.SubsetImages` keeps a content digest, so
the cache keys of a subset never collide with those of the full data.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from unlearning.data.bundle import DatasetBundle, SubsetImages
from unlearning.errors import UserError


def stratified_rows(labels: np.ndarray, fraction: float, seed: int, minimum: int) -> np.ndarray:
    """Sorted row indices: ``fraction`` of each label's rows (at least ``minimum``, at most all), seeded."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep = min(len(members), max(minimum, int(round(fraction * len(members)))))
        rows.append(rng.choice(members, size=keep, replace=False))
    return np.sort(np.concatenate(rows))


def subset_bundle(bundle: DatasetBundle, fraction: float = 1.0, seed: int = 0, minimum: int = 2) -> DatasetBundle:
    """``bundle`` with a stratified ``fraction`` of its training and of its test images (1.0: unchanged)."""
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0 < fraction <= 1:
        raise UserError(f"dataset.subset.fraction must lie in (0, 1], got {fraction!r} (the share of the training "
                        "and test images a debug run keeps per class).")
    if fraction == 1:
        return bundle
    train = stratified_rows(bundle.train_fine, fraction, seed, minimum)
    test = stratified_rows(bundle.test_fine, fraction, seed + 1, minimum)

    def rows_of(labels: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
        return None if labels is None else labels[rows]

    return replace(bundle, train_images=SubsetImages(bundle.train_images, train),
                   test_images=SubsetImages(bundle.test_images, test),
                   train_fine=bundle.train_fine[train], test_fine=bundle.test_fine[test],
                   train_coarse=rows_of(bundle.train_coarse, train), test_coarse=rows_of(bundle.test_coarse, test))


def subset_if_asked(bundle: DatasetBundle, subset: Any) -> DatasetBundle:
    """``subset_bundle`` with the keys of ``dataset.subset`` (null: the whole dataset)."""
    return bundle if not subset else subset_bundle(bundle, **dict(subset))
