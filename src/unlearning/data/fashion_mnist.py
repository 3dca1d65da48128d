"""Fashion-MNIST (Xiao et al. 2017) through torchvision: 60,000 + 10,000 grey 28x28 images of 10 garments.

The project's benchmark where forgetting can be measured (docs/benchmark.md). torchvision's
``FashionMNIST`` reads the original idx files from ``<root>/FashionMNIST/raw/``. They come from,
in this order: that folder when it holds them; Debian's package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``), whose gzipped originals under
``/usr/share/datasets/fashion-mnist/`` are unpacked there once; or torchvision's download.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from torchvision.datasets import FashionMNIST

from unlearning.data.bundle import ArrayImages, DatasetBundle
from unlearning.errors import UserError

#: Where Debian's dataset-fashion-mnist installs the original files.
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
#: Statistics of the 60,000 training images (the usual published values).
MEAN, STD = (0.2860,), (0.3530,)
#: The documented coarse grouping for ``task=subclass``, in the spirit of CIFAR-20: what a shop's
#: department would be. A group of one (bag) has no sub-class to forget inside it.
FASHION_SUPERCLASSES: dict[str, list[str]] = {
    "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "dresses_and_trousers": ["Trouser", "Dress"],
    "bags": ["Bag"],
}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def unpack_system_files(raw: Path, system_dir: Path) -> bool:
    """Unpack Debian's gzipped originals into torchvision's ``raw`` folder; False when they are not installed."""
    sources = [system_dir / f"{name}.gz" for name in FILES]
    if not all(path.is_file() for path in sources):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for source, name in zip(sources, FILES, strict=True):
        target = raw / name
        if target.is_file():
            continue
        staging = raw / f".{name}.unpacking"
        with gzip.open(source, "rb") as packed, open(staging, "wb") as unpacked:
            shutil.copyfileobj(packed, unpacked)
        staging.replace(target)  # a file is either whole or absent
    return True


def _open(root: Path, train: bool, download: bool) -> FashionMNIST:
    try:
        return FashionMNIST(root=str(root), train=train, download=download)
    except Exception as error:  # torchvision raises RuntimeError/URLError/OSError here
        raise UserError(
            f"Fashion-MNIST files are missing under {root / 'FashionMNIST' / 'raw'} and could not be "
            f"{'downloaded' if download else 'loaded (download: false)'} ({type(error).__name__}: {error}). "
            f"Install Debian's package (apt-get install dataset-fashion-mnist: the files land in {SYSTEM_DIR}), "
            "or put the four idx files (train-images-idx3-ubyte, ...) into that raw folder, or point "
            "dataset.root=PATH at a folder that holds FashionMNIST/raw/."
        ) from None


def build_fashion_mnist(root: str = "data", download: bool = True, system_dir: str | None = SYSTEM_DIR,
                        **_: object) -> DatasetBundle:
    """Fashion-MNIST's own split (60,000 train, 10,000 test), fine labels and the documented coarse grouping."""
    root_path = Path(root).expanduser()
    raw = root_path / FashionMNIST.__name__ / "raw"
    if system_dir and not all((raw / name).is_file() for name in FILES):
        unpack_system_files(raw, Path(system_dir))
    train, test = _open(root_path, True, download), _open(root_path, False, download)
    names = list(train.classes)
    coarse_of = np.zeros(len(names), dtype=np.int64)
    for coarse, members in enumerate(FASHION_SUPERCLASSES.values()):
        coarse_of[[names.index(member) for member in members]] = coarse
    train_fine, test_fine = train.targets.numpy().astype(np.int64), test.targets.numpy().astype(np.int64)
    return DatasetBundle(
        name="fashion_mnist",
        train_images=ArrayImages(train.data.numpy()),
        test_images=ArrayImages(test.data.numpy()),
        train_fine=train_fine,
        test_fine=test_fine,
        fine_names=names,
        channels=1,
        native_size=28,
        mean=MEAN,
        std=STD,
        train_coarse=coarse_of[train_fine],
        test_coarse=coarse_of[test_fine],
        coarse_names=list(FASHION_SUPERCLASSES),
    )
