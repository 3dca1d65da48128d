"""The LightningDataModule that serves D, Dr, Df and their test counterparts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unlearning.data.bundle import DatasetBundle, ImageSource
from unlearning.data.corruption import Corruption, Trigger
from unlearning.data.splits import ForgetSplit, ForgettingTask
from unlearning.data.transforms import build_transform
from unlearning.errors import UserError
from unlearning.validate import whole_number

#: ``triggered_test``: every test image with a poison task's trigger pasted on, with its true label.
SPLITS = ("full", "retain", "forget", "test", "retain_test", "forget_test", "triggered_test")


class LabelledImages(Dataset):
    """``(transform(image), label)`` for the chosen indices of an image source.

    With a ``trigger``, the images whose source index is set in ``triggered`` (a mask over the
    source) get it pasted after the transform: a poisoned training set or a triggered test set
    is a view, never a copy.
    """

    def __init__(self, images: ImageSource, labels: np.ndarray, indices: np.ndarray, transform: Callable,
                 trigger: Trigger | None = None, triggered: np.ndarray | None = None):
        self.images, self.labels, self.indices, self.transform = images, labels, indices, transform
        self.trigger, self.triggered = trigger, triggered

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[position])
        image = self.transform(self.images[index])
        if self.trigger is not None and (self.triggered is None or self.triggered[index]):
            image = self.trigger.apply(image)
        return image, int(self.labels[index])


class UnlearningDataModule(L.LightningDataModule):
    """Builds the dataset once, applies the forgetting task and hands out loaders.

    ``labels`` is the dataset's own label kind ("fine", or "coarse" for CIFAR-20); a
    sub-class task switches the model to coarse labels. ``task=None`` serves training only
    (D and the test set), which is what ``train.py`` needs; ``corrupt_with`` then names a
    poison or mislabel task whose corrupted D the model is trained on (a forgetting task
    corrupts D itself). The corruption, when there is one, is :attr:`corruption`: training
    labels are the corrupted ones everywhere, and poisoned images carry the trigger in every
    training split.
    """

    def __init__(
        self,
        builder: Callable[[], DatasetBundle],
        task: ForgettingTask | None = None,
        labels: str = "fine",
        aliases: Mapping[str, str] | None = None,
        image_size: int | None = None,
        augment: Mapping | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        corrupt_with: ForgettingTask | None = None,
    ):
        super().__init__()
        self.builder, self.task, self.dataset_labels = builder, task, labels
        self.corrupt_with = task if task is not None else corrupt_with
        self.corruption: Corruption | None = None
        self.aliases = dict(aliases or {})
        self.image_size = None if image_size is None else whole_number(
            image_size, "model.image_size / dataset.image_size", hint="It is the side in pixels the model sees.")
        self.augment = dict(augment or {})
        self.batch_size = whole_number(batch_size, "dataset.batch_size")
        self.eval_batch_size = whole_number(eval_batch_size, "dataset.eval_batch_size")
        self.num_workers = whole_number(num_workers, "dataset.num_workers", minimum=0,
                                        hint="0 loads data in the main process.")
        self.pin_memory = bool(pin_memory)
        self.bundle: DatasetBundle | None = None
        self.split: ForgetSplit | None = None
        self.label_kind: str = labels

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Downloads happen inside the builder (torchvision), on one process."""

    def setup(self, stage: str | None = None) -> None:
        if self.bundle is not None:
            return
        kind = self.dataset_labels
        if kind not in ("fine", "coarse"):
            raise UserError(f"labels={kind!r} is unknown: valid label kinds are fine (each class) and coarse "
                            "(superclasses: cifar100, cifar20, digits); leave labels=null for the dataset's own.")
        bundle = self.builder()
        if kind == "coarse" and not bundle.has_coarse:
            raise UserError(f"dataset {bundle.name} has no coarse labels; use dataset labels: fine.")
        size = self.image_size or bundle.native_size
        clean = bundle  # splits are drawn on the true labels (a corruption's own draw must not see itself)
        if self.corrupt_with is not None:
            kind = self.corrupt_with.label_kind(bundle, kind)
            self.corruption = self.corrupt_with.corruption(bundle, size, self.aliases)
            if self.corruption is not None:  # what the model was trained on, everywhere
                bundle = replace(bundle, train_fine=self.corruption.labels)
        if self.task is not None:
            kind = self.task.label_kind(bundle, kind)
            self.split = self.task.split(clean, kind, self.aliases)
            self.split.check(len(bundle.train_fine))
        self.bundle, self.label_kind = bundle, kind
        self._eval_transform = build_transform(bundle.mean, bundle.std, bundle.native_size, size)
        self._train_transform = build_transform(bundle.mean, bundle.std, bundle.native_size, size, self.augment)

    # --------------------------------------------------------------- facts
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        self._require_setup()
        return self.bundle.names(self.label_kind)

    @property
    def channels(self) -> int:
        self._require_setup()
        return self.bundle.channels

    @property
    def input_size(self) -> int:
        self._require_setup()
        return int(self.image_size or self.bundle.native_size)

    def indices(self, split: str) -> np.ndarray:
        """Indices into the train ("full", "retain", "forget") or test set of ``split``."""
        self._require_setup()
        if split in ("full", "test", "triggered_test"):
            return np.arange(len(self.bundle.train_fine if split == "full" else self.bundle.test_fine))
        if self.split is None:
            raise RuntimeError(f"split {split!r} needs a forgetting task")
        return {
            "retain": self.split.retain_train,
            "forget": self.split.forget_train,
            "retain_test": self.split.retain_test,
            "forget_test": self.split.forget_test,
        }[split]

    def labels_of(self, split: str) -> np.ndarray:
        """Labels (of the model's label kind) of the samples of ``split``, in loader order."""
        side = "test" if split.endswith("test") else "train"
        return self.bundle.labels(self.label_kind, side)[self.indices(split)]

    # ------------------------------------------------------------- loaders
    def dataset(self, split: str, augment: bool = False) -> LabelledImages:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        self._require_setup()
        side = "test" if split.endswith("test") else "train"
        images = self.bundle.test_images if side == "test" else self.bundle.train_images
        transform = self._train_transform if augment else self._eval_transform
        trigger = self.corruption.trigger if self.corruption is not None else None
        if split == "triggered_test":
            if trigger is None:
                raise RuntimeError("the triggered test set needs a poison task")
            triggered = None  # every test image
        elif side == "train" and trigger is not None:
            triggered = self.corruption.mask
        else:
            trigger = triggered = None
        return LabelledImages(images, self.bundle.labels(self.label_kind, side), self.indices(split), transform,
                              trigger, triggered)

    def loader(
        self,
        split: str,
        augment: bool = False,
        shuffle: bool = False,
        batch_size: int | None = None,
        sampler=None,
        batch_sampler=None,
        generator: torch.Generator | None = None,
    ) -> DataLoader:
        """A loader over ``split``; without ``shuffle`` the order is the index order."""
        dataset = self.dataset(split, augment=augment)
        options = dict(num_workers=self.num_workers, pin_memory=self.pin_memory,
                       persistent_workers=self.num_workers > 0)
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, **options)
        return DataLoader(
            dataset,
            batch_size=batch_size or (self.batch_size if augment or shuffle else self.eval_batch_size),
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            generator=generator,
            **options,
        )

    def train_dataloader(self) -> DataLoader:
        """D with augmentation, shuffled: what training from scratch uses."""
        return self.loader("full", augment=True, shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.loader("test")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def _require_setup(self) -> None:
        if self.bundle is None:
            raise RuntimeError("call setup() first")
