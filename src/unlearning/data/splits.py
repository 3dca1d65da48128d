"""Forget/retain splits for full-class, sub-class and random forgetting.

Each task is a small object built by Hydra from ``conf/task/*.yaml``; it decides which
label set the model uses (fine or coarse) and which training/test samples are forgotten.
Splits are index arrays into the train and test sets; they are deterministic for a seed,
Dr and Df never overlap, and together they are exactly D.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from unlearning.data.bundle import DatasetBundle
from unlearning.data.classes import resolve_class
from unlearning.errors import UserError


@dataclass(frozen=True)
class ForgetSplit:
    """Sorted index arrays into the train (``*_train``) and test (``*_test``) sets.

    ``description`` names what is forgotten in words (e.g. ``class rocket``); ``target`` is
    the resolved class index, or ``None`` for random forgetting, where the test set is
    shared: ``forget_test`` is then empty and ``retain_test`` is the whole test set.
    """

    retain_train: np.ndarray
    forget_train: np.ndarray
    retain_test: np.ndarray
    forget_test: np.ndarray
    description: str
    target: int | None = None

    def check(self, n_train: int) -> None:
        """Assert the split invariants; a failure here is a bug, not a user error."""
        assert np.intersect1d(self.retain_train, self.forget_train).size == 0
        assert self.retain_train.size + self.forget_train.size == n_train


def _complement(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(~mask), np.flatnonzero(mask)


class ForgettingTask(ABC):
    """What to forget. ``label_kind`` picks the labels the model is trained on."""

    name: str = ""

    def label_kind(self, bundle: DatasetBundle, dataset_labels: str) -> str:
        return dataset_labels

    @abstractmethod
    def split(self, bundle: DatasetBundle, label_kind: str, aliases: dict | None = None) -> ForgetSplit: ...


class FullClassTask(ForgettingTask):
    """Forget every training sample of one class of the labels the model predicts."""

    name = "fullclass"

    def __init__(self, forget: str | int):
        self.forget = forget

    def split(self, bundle: DatasetBundle, label_kind: str, aliases: dict | None = None) -> ForgetSplit:
        names = bundle.names(label_kind)
        what = "superclass" if label_kind == "coarse" else "class"
        target = resolve_class(self.forget, names, aliases, what=what, dataset=_title(bundle, label_kind))
        retain_train, forget_train = _complement(bundle.labels(label_kind, "train") == target)
        retain_test, forget_test = _complement(bundle.labels(label_kind, "test") == target)
        return ForgetSplit(retain_train, forget_train, retain_test, forget_test, f"{what} {names[target]}", target)


class SubClassTask(ForgettingTask):
    """Forget one fine class inside its superclass; the model predicts the coarse labels."""

    name = "subclass"

    def __init__(self, forget: str | int):
        self.forget = forget

    def label_kind(self, bundle: DatasetBundle, dataset_labels: str) -> str:
        if not bundle.has_coarse:
            raise UserError(
                f"task=subclass needs a dataset with coarse labels (a grouping of its classes); "
                f"{bundle.name} has none. Datasets with coarse labels: cifar100 (20 superclasses), "
                "cifar20, digits (documented pairs). Use task=fullclass or task=random here."
            )
        return "coarse"

    def split(self, bundle: DatasetBundle, label_kind: str, aliases: dict | None = None) -> ForgetSplit:
        self.label_kind(bundle, label_kind)
        target = resolve_class(self.forget, bundle.fine_names, aliases, what="sub-class",
                               dataset=_title(bundle, "fine"))
        retain_train, forget_train = _complement(bundle.train_fine == target)
        retain_test, forget_test = _complement(bundle.test_fine == target)
        superclass = bundle.coarse_names[bundle.coarse_of_fine()[target]]
        return ForgetSplit(
            retain_train, forget_train, retain_test, forget_test,
            f"sub-class {bundle.fine_names[target]} of {superclass}", target,
        )


class RandomTask(ForgettingTask):
    """Forget ``n_forget`` (or ``fraction`` of D) training samples drawn with ``seed``."""

    name = "random"

    def __init__(self, n_forget: int | None = None, fraction: float | None = None, seed: int = 0):
        if (n_forget is None) == (fraction is None):
            raise UserError("task=random needs exactly one of task.n_forget (a count) or task.fraction (0..1).")
        self.n_forget, self.fraction, self.seed = n_forget, fraction, seed

    def split(self, bundle: DatasetBundle, label_kind: str, aliases: dict | None = None) -> ForgetSplit:
        n_train = len(bundle.train_fine)
        if self.fraction is not None:
            if not 0 < float(self.fraction) < 1:
                raise UserError(f"task.fraction must lie strictly between 0 and 1, got {self.fraction}.")
            count = int(round(float(self.fraction) * n_train))
        else:
            count = _as_count(self.n_forget)
        if not 1 <= count < n_train:
            raise UserError(
                f"task.n_forget={count} is impossible for {bundle.name}: D has {n_train} training samples, "
                f"so n_forget must be between 1 and {n_train - 1} (or give task.fraction in (0, 1))."
            )
        rng = np.random.default_rng(int(self.seed))
        mask = np.zeros(n_train, dtype=bool)
        mask[rng.choice(n_train, size=count, replace=False)] = True
        retain_train, forget_train = _complement(mask)
        all_test = np.arange(len(bundle.test_fine))
        return ForgetSplit(
            retain_train, forget_train, all_test, np.array([], dtype=np.int64),
            f"{count} random samples (seed {self.seed})", None,
        )


class GivenSamples(ForgettingTask):
    """Forget exactly the training samples at ``indices`` (a membership audit's shadow forget sets)."""

    name = "random"

    def __init__(self, indices, description: str):
        self.forget, self.description = np.asarray(indices, dtype=np.int64), description

    def split(self, bundle: DatasetBundle, label_kind: str, aliases: dict | None = None) -> ForgetSplit:
        mask = np.zeros(len(bundle.train_fine), dtype=bool)
        mask[self.forget] = True
        retain_train, forget_train = _complement(mask)
        return ForgetSplit(retain_train, forget_train, np.arange(len(bundle.test_fine)), np.array([], dtype=np.int64),
                           self.description, None)


def _as_count(value: object) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"task.n_forget must be a whole number, got {value!r}.") from None
    if not number.is_integer():
        raise UserError(f"task.n_forget must be a whole number, got {value!r}.")
    return int(number)


def _title(bundle: DatasetBundle, label_kind: str) -> str:
    return f"{bundle.name} ({label_kind} labels)"
