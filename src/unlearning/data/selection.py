"""Which images a run uses: the validation split held out of the training pool, D, and debug subsets.

A builder returns a dataset's own train and test split. Before anything trains, a seeded,
stratified **validation split** is held out of the training images (``dataset.split.validation``):
it selects epochs, tunes defaults and tells a method how the model does on unseen data, so
that nothing that learns reads the test split. **D** is the rest, or a seeded, stratified
subset of it (``dataset.split.train``: the CPU-sized Fashion-MNIST setting keeps 5,000 of
55,000). ``dataset.subset`` (``debug=fast``) keeps a stratified fraction of every side.

Every choice is a view (:class:`~unlearning.data.bundle.SubsetImages`), never a copy, and keeps
a content digest, so the cache keys of two selections never collide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from unlearning.data.bundle import DatasetBundle, SubsetImages
from unlearning.errors import UserError


@dataclass(frozen=True)
class SplitSettings:
    """``dataset.split``: the validation split's size (a share < 1 or a count >= 1), D's size (None: all),
    the test images reported on (None: all; a seeded, stratified subset keeps CPU-sized evaluation cheap), the seed."""

    validation: float = 0.1
    train: int | None = None
    test: int | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> SplitSettings:
        """Checked settings from the YAML's mapping; unknown keys and bad values are UserErrors naming the key."""
        options = dict(options or {})
        unknown = sorted(set(options) - {"validation", "train", "test", "seed"})
        if unknown:
            raise UserError(f"dataset.split has unknown setting(s) {', '.join(unknown)}; valid: validation "
                            "(share or count of the training images held out), train (D's size, null: all), "
                            "test (test images reported on, null: all), seed.")
        validation = options.get("validation", cls.validation)
        try:
            validation = float(validation)
        except (TypeError, ValueError):
            validation = float("nan")
        if not (0 < validation < 1 or (validation >= 1 and validation.is_integer())):
            raise UserError(f"dataset.split.validation must be a share in (0, 1) or a whole count >= 1, got "
                            f"{options.get('validation')!r} (the training images held out to select epochs and "
                            "tune defaults; the test split is only for reporting).")
        train = options.get("train")
        if train is not None:
            train = _whole(train, "dataset.split.train", "D's size, a whole number >= 1 (null: every remaining image)")
        test = options.get("test")
        if test is not None:
            test = _whole(test, "dataset.split.test", "the number of test images reported on, >= 1 (null: all)")
        seed = _whole(options.get("seed", 0), "dataset.split.seed", "a whole number >= 0", minimum=0)
        return cls(validation=validation, train=train, test=test, seed=seed)

    def describe(self) -> dict[str, Any]:
        """What the settings are, for a model's identity and metadata (the test subset changes no model)."""
        return {"validation": self.validation, "train": self.train, "seed": self.seed}


def _whole(value: Any, key: str, what: str, minimum: int = 1) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or number < minimum:
        raise UserError(f"{key} must be {what}, got {value!r}.")
    return int(number)


def stratified_rows(labels: np.ndarray, fraction: float, seed: int, minimum: int) -> np.ndarray:
    """Sorted row indices: ``fraction`` of each label's rows (at least ``minimum``, at most all), seeded."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep = min(len(members), max(minimum, int(round(fraction * len(members)))))
        rows.append(rng.choice(members, size=keep, replace=False))
    return np.sort(np.concatenate(rows)) if rows else np.empty(0, dtype=np.int64)


def stratified_count(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted rows: ``count`` rows in all, each label's share as in ``labels`` (largest remainders), seeded."""
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    take = np.floor(exact).astype(np.int64)
    for position in np.argsort(-(exact - take), kind="stable")[: count - int(take.sum())]:
        take[position] += 1
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(labels == label), size=int(k), replace=False)
            for label, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(rows)) if rows else np.empty(0, dtype=np.int64)


def _rows(bundle: DatasetBundle, rows: np.ndarray, side: str) -> dict[str, Any]:
    """The fields of ``side`` restricted to ``rows`` (of the training pool)."""
    coarse = None if bundle.train_coarse is None else bundle.train_coarse[rows]
    return {f"{side}_images": SubsetImages(bundle.train_images, rows), f"{side}_fine": bundle.train_fine[rows],
            f"{side}_coarse": coarse}


def hold_out_validation(bundle: DatasetBundle, settings: SplitSettings) -> DatasetBundle:
    """``bundle`` with a stratified validation split taken out of its training images, and D the rest (or a subset).

    Validation first, D second: D's subset is drawn from what validation left, so the two never
    overlap, and a larger D (``train``) keeps the same validation split.
    """
    if bundle.has_validation:
        return bundle
    pool = len(bundle.train_fine)
    count = int(round(settings.validation * pool)) if settings.validation < 1 else int(settings.validation)
    classes = len(np.unique(bundle.train_fine))
    if not 1 <= count <= pool - classes:
        raise UserError(f"dataset.split.validation={settings.validation:g} holds out {count} of the {pool} training "
                        f"images of {bundle.name}; it must hold at least one and leave D at least one image per "
                        f"class ({classes}). Give a share in (0, 1) or a count in between.")
    validation = stratified_count(bundle.train_fine, count, settings.seed)
    rest = np.setdiff1d(np.arange(pool), validation)
    if settings.train is not None:
        if not classes <= settings.train <= len(rest):
            raise UserError(f"dataset.split.train={settings.train} is impossible for {bundle.name}: after the "
                            f"validation split {len(rest)} training images remain, and D needs at least one per "
                            f"class ({classes}). Give a size between {classes} and {len(rest)}, or null for all.")
        rest = rest[stratified_count(bundle.train_fine[rest], settings.train, settings.seed + 1)]
    test = {}
    if settings.test is not None and settings.test < len(bundle.test_fine):
        rows = stratified_count(bundle.test_fine, settings.test, settings.seed + 2)
        test = {"test_images": SubsetImages(bundle.test_images, rows), "test_fine": bundle.test_fine[rows],
                "test_coarse": None if bundle.test_coarse is None else bundle.test_coarse[rows]}
    return replace(bundle, **_rows(bundle, validation, "val"), **_rows(bundle, rest, "train"), **test)


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
