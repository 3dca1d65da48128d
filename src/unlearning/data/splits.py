"""Forget/retain splits for full-class, sub-class, random, poison and mislabel forgetting.

Each task is a small object built by Hydra from ``conf/task/*.yaml``; it decides which
label set the model uses (fine or coarse) and which training/test samples are forgotten.
Splits are index arrays into the train and test sets; they are deterministic for a seed,
Dr and Df never overlap, and together they are exactly D.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from unlearning.data.bundle import DatasetBundle
from unlearning.data.classes import resolve_class
from unlearning.data.corruption import (
    Corruption,
    Trigger,
    identified_subset,
    maximum_normalised_value,
    mislabel,
    mislabel_settings,
    poison,
    poison_settings,
    trigger_size,
)
from unlearning.errors import UserError


@dataclass(frozen=True)
class ForgetSplit:
    """Sorted index arrays into the train (``*_train``), validation (``*_val``) and test (``*_test``) sets.

    ``description`` names what is forgotten in words (e.g. ``class rocket``); ``target`` is
    the resolved class index, or ``None`` for random forgetting, where the validation and
    test sets are shared: ``forget_val`` and ``forget_test`` are then empty and the retained
    parts are the whole sets. ``retain_val`` is what a retrained reference validates on: the
    validation split without the forgotten class (it holds no Df).
    """

    retain_train: np.ndarray
    forget_train: np.ndarray
    retain_test: np.ndarray
    forget_test: np.ndarray
    description: str
    target: int | None = None
    retain_val: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    forget_val: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def check(self, n_train: int, n_val: int = 0) -> None:
        """Assert the split invariants; a failure here is a bug, not a user error."""
        assert np.intersect1d(self.retain_train, self.forget_train).size == 0
        assert self.retain_train.size + self.forget_train.size == n_train
        assert self.retain_val.size + self.forget_val.size == n_val


def _shared(bundle: DatasetBundle) -> dict[str, np.ndarray]:
    """The validation split of a task without a forgotten class: all of it retained, none forgotten."""
    return {"retain_val": np.arange(len(bundle.labels("fine", "val"))), "forget_val": np.empty(0, dtype=np.int64)}


def _by_mask(mask: np.ndarray) -> dict[str, np.ndarray]:
    """``retain_val`` / ``forget_val`` from a mask over the validation split (True: the forgotten class)."""
    return dict(zip(("retain_val", "forget_val"), _complement(mask), strict=True))


def _complement(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(~mask), np.flatnonzero(mask)


class ForgettingTask(ABC):
    """What to forget. ``label_kind`` picks the labels the model is trained on."""

    name: str = ""

    def label_kind(self, bundle: DatasetBundle, dataset_labels: str) -> str:
        return dataset_labels

    def corruption(self, bundle: DatasetBundle, image_size: int, aliases: dict | None = None) -> Corruption | None:
        """The training data's corruption the model was trained with (poison, mislabel); None: clean D."""
        return None

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
        return ForgetSplit(retain_train, forget_train, retain_test, forget_test, f"{what} {names[target]}", target,
                           **_by_mask(bundle.labels(label_kind, "val") == target))


class SubClassTask(ForgettingTask):
    """Forget one fine class inside its superclass; the model predicts the coarse labels."""

    name = "subclass"

    def __init__(self, forget: str | int, labels: str = "coarse"):
        """``labels``: the label set of the model that forgets, which for a sub-class request is the
        coarse one (the config says so, ``--cfg job`` shows it); any other value is refused."""
        if labels != "coarse":
            raise UserError(f"task=subclass forgets a fine class from the model of the COARSE labels (its siblings keep "
                            f"the superclass's label); task.labels={labels!r} is not a sub-class request. For a "
                            "model on fine labels, use task=fullclass.")
        self.forget = forget
        self.labels = labels

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
        coarse_of = bundle.coarse_of_fine()
        superclass = bundle.coarse_names[coarse_of[target]]
        siblings = [bundle.fine_names[f] for f, c in coarse_of.items() if c == coarse_of[target] and f != target]
        if not siblings:
            raise UserError(f"{bundle.fine_names[target]} is the only class of its superclass {superclass} in "
                            f"{bundle.name}: forgetting it forgets the whole superclass, which is full-class "
                            f"forgetting. Use task=fullclass labels=coarse task.forget={superclass}, or a sub-class "
                            "that shares its superclass with others.")
        return ForgetSplit(
            retain_train, forget_train, retain_test, forget_test,
            f"sub-class {bundle.fine_names[target]} of {superclass}", target,
            **_by_mask(bundle.labels("fine", "val") == target),
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
            f"{count} random samples (seed {self.seed})", None, **_shared(bundle),
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
                           self.description, None, **_shared(bundle))


class CorruptionTask(ForgettingTask):
    """Bad training samples, partly identified: Df = the identified ones, Dr = all else (unidentified included).

    The model was trained on the corrupted D (:meth:`corruption`); only ``identified`` (a share
    of the corrupted samples) or ``identified_count`` of them are known and forgotten. The rest
    stay in Dr as loaded, with their wrong labels (and trigger), as the reference code does: a
    method that fine-tunes on Dr relearns them. The test set is shared (no Df-test).
    """

    kind = ""

    def __init__(self, identified: float | None = None, identified_count: int | None = None,
                 identified_seed: int = 0):
        self.identified, self.identified_count, self.identified_seed = identified, identified_count, identified_seed

    def label_kind(self, bundle: DatasetBundle, dataset_labels: str) -> str:
        if dataset_labels != "fine":
            raise UserError(f"task={self.name} corrupts the dataset's own (fine) labels; {bundle.name} was asked "
                            f"for {dataset_labels} labels. Leave labels unset (dataset.labels=fine).")
        return "fine"

    def split(self, bundle: DatasetBundle, label_kind: str, aliases: dict | None = None) -> ForgetSplit:
        self.label_kind(bundle, label_kind)
        corruption = self.corruption(bundle, bundle.native_size, aliases)
        forget_train = identified_subset(corruption.indices, self.identified, self.identified_count,
                                         self.identified_seed, f"task={self.name}")
        mask = np.zeros(len(bundle.train_fine), dtype=bool)
        mask[forget_train] = True
        retain_train, forget_train = _complement(mask)
        return ForgetSplit(
            retain_train, forget_train, np.arange(len(bundle.test_fine)), np.array([], dtype=np.int64),
            f"{len(forget_train)} of {len(corruption.indices)} {self.kind} samples identified", corruption.target,
            **_shared(bundle),
        )


class PoisonTask(CorruptionTask):
    """Backdoor poisons (Potion): ``poison`` = {share | count, target, trigger_size, seed}; see conf/task/poison.yaml."""

    name = kind = "poison"

    def __init__(self, poison: dict, identified: float | None = None, identified_count: int | None = None,
                 identified_seed: int = 0):
        super().__init__(identified, identified_count, identified_seed)
        self.settings = poison_settings(poison)

    def corruption(self, bundle: DatasetBundle, image_size: int, aliases: dict | None = None) -> Corruption:
        s = self.settings
        target = resolve_class(s["target"], bundle.fine_names, aliases, what="poison target class",
                               dataset=_title(bundle, "fine"))
        trigger = Trigger(trigger_size(s["trigger_size"], int(image_size)),
                          maximum_normalised_value(bundle.mean, bundle.std))
        return poison(bundle.train_fine, bundle.fine_names, share=s["share"], count=s["count"], target=target,
                      seed=s["seed"], trigger=trigger, from_target=s["from_target"], settings=s)


class MislabelTask(CorruptionTask):
    """Data-entry errors (ASSD): ``mislabel`` = {share | count, mode random | swap, classes, seed}."""

    name = kind = "mislabel"

    def __init__(self, mislabel: dict, identified: float | None = None, identified_count: int | None = None,
                 identified_seed: int = 0):
        super().__init__(identified, identified_count, identified_seed)
        self.settings = mislabel_settings(mislabel)

    def corruption(self, bundle: DatasetBundle, image_size: int, aliases: dict | None = None) -> Corruption:
        s = self.settings
        classes = None
        if s["classes"] is not None:
            classes = tuple(resolve_class(c, bundle.fine_names, aliases, what="mislabel class",
                                          dataset=_title(bundle, "fine")) for c in s["classes"])
        return mislabel(bundle.train_fine, bundle.fine_names, share=s["share"], count=s["count"], mode=s["mode"],
                        classes=classes, seed=s["seed"], settings=s)


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
