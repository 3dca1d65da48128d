"""CIFAR-10, CIFAR-100 and CIFAR-20 through torchvision, with a clear message when offline."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from unlearning.data.bundle import ArrayImages, DatasetBundle
from unlearning.errors import UserError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _open(cls: type, root: Path, train: bool, download: bool):
    try:
        return cls(root=str(root), train=train, download=download)
    except Exception as error:  # torchvision raises RuntimeError/URLError/OSError here
        folder = root / cls.base_folder
        archive = cls.filename
        raise UserError(
            f"{cls.__name__} files are missing under {folder} and could not be "
            f"{'downloaded' if download else 'loaded (download: false)'} ({type(error).__name__}: {error}). "
            f"Download {archive} from {_HOME} and extract it into {root} so that "
            f"{folder}/{'data_batch_1' if cls is CIFAR10 else 'train'} exists, or point "
            f"dataset.root=PATH at a folder that already holds {cls.base_folder}/."
        ) from None


def _bundle(name: str, train: CIFAR10, test: CIFAR10, **extra: object) -> DatasetBundle:
    """The parts every CIFAR variant shares: images, fine labels and names, CIFAR's statistics."""
    return DatasetBundle(
        name=name,
        train_images=ArrayImages(train.data),
        test_images=ArrayImages(test.data),
        train_fine=np.asarray(train.targets, dtype=np.int64),
        test_fine=np.asarray(test.targets, dtype=np.int64),
        fine_names=list(train.classes),
        channels=3,
        native_size=32,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        **extra,
    )


def build_cifar10(root: str = "data", download: bool = True, **_: object) -> DatasetBundle:
    root_path = Path(root).expanduser()
    return _bundle("cifar10", _open(CIFAR10, root_path, True, download), _open(CIFAR10, root_path, False, download))


def _coarse_labels(dataset: CIFAR100, root: Path, train: bool) -> np.ndarray:
    """Read the 20 superclass labels that the CIFAR-100 files carry beside the fine ones."""
    files = dataset.train_list if train else dataset.test_list
    labels: list[int] = []
    for name, _checksum in files:
        with open(root / dataset.base_folder / name, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        labels.extend(entry["coarse_labels"])
    return np.asarray(labels, dtype=np.int64)


def _coarse_names(root: Path) -> list[str]:
    with open(root / CIFAR100.base_folder / "meta", "rb") as handle:
        return list(pickle.load(handle, encoding="latin1")["coarse_label_names"])


def build_cifar100(root: str = "data", download: bool = True, **_: object) -> DatasetBundle:
    """CIFAR-100 with both label sets: fine (100 classes) and coarse (20 superclasses)."""
    root_path = Path(root).expanduser()
    train = _open(CIFAR100, root_path, True, download)
    test = _open(CIFAR100, root_path, False, download)
    return _bundle(
        "cifar100", train, test,
        train_coarse=_coarse_labels(train, root_path, True),
        test_coarse=_coarse_labels(test, root_path, False),
        coarse_names=_coarse_names(root_path),
    )
