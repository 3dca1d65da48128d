"""The LightningDataModule that serves D, Dr, Df, the validation split and their test counterparts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unlearning.data.bundle import DatasetBundle, ImageSource
from unlearning.data.corruption import Corruption, Trigger
from unlearning.data.selection import SplitSettings, hold_out_validation
from unlearning.data.splits import ForgetSplit, ForgettingTask
from unlearning.data.transforms import BatchTransform, build_transform
from unlearning.errors import UserError
from unlearning.validate import whole_number

#: Every split a loader serves. ``*val``: the validation split (training data held out of D) and its
#: retained / forgotten parts; ``triggered_test``: every test image with a poison task's trigger, true labels.
SPLITS = ("full", "retain", "forget", "val", "retain_val", "forget_val",
          "test", "retain_test", "forget_test", "triggered_test")


def side_of(split: str) -> str:
    """The side of the dataset a split's samples come from: "train", "val" or "test"."""
    return "test" if split.endswith("test") else "val" if split.endswith("val") else "train"


class LabelledImages(Dataset):
    """``(image, label)`` for the chosen indices of an image source, transformed.

    Two ways to hold the images, the same samples either way:

    * ``pixels`` (a uint8 tensor of the whole side at the model's size): a batch of positions is
      fetched at once (:meth:`__getitems__`, which a DataLoader calls with each batch) and
      transformed by ``batch_transform`` in one go, augmented when ``augment``;
    * otherwise each image is read from ``images`` and transformed alone by ``transform``
      (folders too large for memory).

    With a ``trigger``, the images whose source index is set in ``triggered`` (a mask over the
    source) get it pasted after the transform: a poisoned training set or a triggered test set
    is a view, never a copy.
    """

    def __init__(self, images: ImageSource, labels: np.ndarray, indices: np.ndarray, transform: Callable | None,
                 trigger: Trigger | None = None, triggered: np.ndarray | None = None,
                 pixels: torch.Tensor | None = None, batch_transform: BatchTransform | None = None,
                 augment: bool = False):
        self.images, self.labels, self.indices, self.transform = images, labels, indices, transform
        self.trigger, self.triggered = trigger, triggered
        self.pixels, self.batch_transform, self.augment = pixels, batch_transform, bool(augment)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        if self.pixels is not None:
            return self.__getitems__([position])[0]
        index = int(self.indices[position])
        image = self.transform(self.images[index])
        if self.trigger is not None and (self.triggered is None or self.triggered[index]):
            image = self.trigger.apply(image)
        return image, int(self.labels[index])

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch: one gather, one transform; returned as samples (what DataLoader's collate expects)."""
        if self.pixels is None:
            return [self[int(p)] for p in positions]
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        images = self.batch_transform(self.pixels[torch.from_numpy(rows).to(self.pixels.device)],
                                      augment=self.augment)
        if self.trigger is not None:
            marked = np.ones(len(rows), dtype=bool) if self.triggered is None else self.triggered[rows]
            if marked.any():
                size = self.trigger.size
                images[torch.from_numpy(np.flatnonzero(marked)).to(images.device), :, -size:, -size:] = \
                    self.trigger.value
        return list(zip(images.unbind(0), self.labels[rows].tolist(), strict=True))


class UnlearningDataModule(L.LightningDataModule):
    """Builds the dataset once, holds out the validation split, applies the forgetting task, hands out loaders.

    ``labels`` is the dataset's own label kind ("fine", or "coarse" for CIFAR-20); a
    sub-class task switches the model to coarse labels. ``task=None`` serves training only
    (D, validation and test), which is what ``train.py`` needs; ``corrupt_with`` then names a
    poison or mislabel task whose corrupted D the model is trained on (a forgetting task
    corrupts D itself). The corruption, when there is one, is :attr:`corruption`: training
    labels are the corrupted ones everywhere, and poisoned images carry the trigger in every
    training split. ``split`` (``dataset.split``) sizes the validation split and D.

    ``in_memory`` (bytes; ``dataset.in_memory_gb`` in the config): a side whose images fit is held as one uint8
    tensor at the model's size and transformed a batch at a time (0: never; every image is then
    read and transformed alone). ``device``: where those tensors live and batches are made
    ("cuda": on the current GPU, augmentation included; None: host memory).
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
        split: SplitSettings | Mapping | None = None,
        in_memory: int = 4 * 2**30,
        device: str | None = None,
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
        self.split_settings = split if isinstance(split, SplitSettings) else SplitSettings.from_config(split)
        self.in_memory = whole_number(in_memory, "in_memory", minimum=0,
                                      hint="It is the most bytes a side's images may take as one tensor (0: never).")
        self.device = device
        self.bundle: DatasetBundle | None = None
        self.split: ForgetSplit | None = None
        self.label_kind: str = labels
        self._pixels: dict[str, torch.Tensor | None] = {}

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Downloads happen inside the builder (torchvision), on one process."""

    def setup(self, stage: str | None = None) -> None:
        if self.bundle is not None:
            return
        kind = self.dataset_labels
        if kind not in ("fine", "coarse"):
            raise UserError(f"labels={kind!r} is unknown: valid label kinds are fine (each class) and coarse "
                            "(superclasses: cifar100, cifar20, digits, fashion_mnist); leave labels=null for the "
                            "dataset's own.")
        bundle = hold_out_validation(self.builder(), self.split_settings)
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
            self.split.check(len(bundle.train_fine), len(bundle.labels("fine", "val")))
        self.bundle, self.label_kind = bundle, kind
        self._eval_transform = build_transform(bundle.mean, bundle.std, bundle.native_size, size)
        self._train_transform = build_transform(bundle.mean, bundle.std, bundle.native_size, size, self.augment)
        self._batch_transform = BatchTransform(bundle.mean, bundle.std, self.augment, size)

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
        """Indices into the train ("full", "retain", "forget"), validation or test side of ``split``."""
        self._require_setup()
        if split in ("full", "val", "test", "triggered_test"):
            return np.arange(len(self.bundle.labels("fine", side_of(split))))
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if self.split is None:
            raise RuntimeError(f"split {split!r} needs a forgetting task")
        return getattr(self.split, split if split.endswith(("test", "val")) else f"{split}_train")

    def labels_of(self, split: str) -> np.ndarray:
        """Labels (of the model's label kind) of the samples of ``split``, in loader order."""
        return self.bundle.labels(self.label_kind, side_of(split))[self.indices(split)]

    def pixels(self, side: str) -> torch.Tensor | None:
        """The images of ``side`` as one uint8 tensor at the model's size on :attr:`device`, or None (per image)."""
        self._require_setup()
        if side not in self._pixels:
            pixels = None
            if self.in_memory and (side != "val" or self.bundle.has_validation):
                pixels = self.bundle.images(side).pixels(self.input_size, self.in_memory)
            if pixels is not None and self.device is not None and str(self.device).startswith("cuda"):
                pixels = pixels.to(torch.device("cuda", torch.cuda.current_device()))
            self._pixels[side] = pixels
        return self._pixels[side]

    # ------------------------------------------------------------- loaders
    def dataset(self, split: str, augment: bool = False) -> LabelledImages:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        self._require_setup()
        side = side_of(split)
        images = self.bundle.images(side) if side != "val" or self.bundle.has_validation else None
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
                              trigger, triggered, pixels=self.pixels(side), batch_transform=self._batch_transform,
                              augment=augment)

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
        on_gpu = dataset.pixels is not None and dataset.pixels.is_cuda
        workers = 0 if dataset.pixels is not None else self.num_workers  # batches of a tensor cost less than a worker
        options = dict(num_workers=workers, pin_memory=self.pin_memory and not on_gpu,
                       persistent_workers=workers > 0)
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

    def sample_loader(self, split: str, count: int, seed: int = 0) -> DataLoader:
        """An un-augmented loader over a seeded sample of ``count`` samples of ``split`` (all when fewer), in index order."""
        n = len(self.indices(split))
        positions = np.sort(np.random.default_rng(seed).permutation(n)[: int(count)]).tolist()
        return self.loader(split, sampler=positions)

    def train_dataloader(self) -> DataLoader:
        """D with augmentation, shuffled: what training from scratch uses."""
        return self.loader("full", augment=True, shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        """The validation split (training data held out of D): what selects and tunes. Never the test split."""
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def _require_setup(self) -> None:
        if self.bundle is None:
            raise RuntimeError("call setup() first")
