"""A real image folder of small grey images for `dataset=imagefolder`: bundled digits or Fashion-MNIST.

    python -m bench.grey_folder data/grey-digits                         # 1,797 digit PNGs, 28x28
    python -m bench.grey_folder data/fashion-folder --source fashion_mnist --per-class 625

The recipe of `dataset=imagefolder` was reported chaotic on a folder of 5,000 grey 28x28
handwritten images trained at 16 px. No such folder can be downloaded here, so this writes real
ones that need no download, in torchvision's ImageFolder layout (``root/<class>/<n>.png``):

* ``digits``: scikit-learn's 1,797 real 8x8 digit scans, upsampled (bilinear) to 28x28 8-bit PNGs
  (easy: every recipe ends above 99 %);
* ``fashion_mnist``: a seeded, stratified ``--per-class`` sample of Fashion-MNIST's 60,000 real
  28x28 training images as they are (Debian's dataset-fashion-mnist, or ``--data`` holding
  FashionMNIST/raw/). Class folders are named after the classes (``T-shirt/top`` as ``T-shirt_top``).

`python -m bench.recipe --dataset imagefolder` trains on either (docs/recipe.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def _refuse_non_empty(root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; give a new folder")


def write_digit_folder(root: Path, size: int = 28) -> int:
    """Write every bundled digit as a ``size`` x ``size`` grey PNG under ``root/<digit>/``; returns the count.

    Refuses a non-empty ``root`` so that a user's folder is never overwritten.
    """
    _refuse_non_empty(root)
    digits = load_digits()
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = Image.fromarray(np.round(pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")
        target = root / str(label)
        target.mkdir(parents=True, exist_ok=True)
        grey.resize((size, size), Image.Resampling.BILINEAR).save(target / f"{index:04d}.png")
    return len(digits.target)


def write_fashion_folder(root: Path, per_class: int, data: Path, seed: int = 0) -> int:
    """Write ``per_class`` Fashion-MNIST training images of each class (seeded) as 28x28 grey PNGs."""
    from unlearning.data.fashion_mnist import build_fashion_mnist

    _refuse_non_empty(root)
    bundle = build_fashion_mnist(str(data), download=False)
    rng = np.random.default_rng(seed)
    count = 0
    for label, name in enumerate(bundle.fine_names):
        members = np.flatnonzero(bundle.train_fine == label)
        target = root / name.replace("/", "_")
        target.mkdir(parents=True, exist_ok=True)
        for index in np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False)):
            Image.fromarray(bundle.train_images.array[index], mode="L").save(target / f"{index:05d}.png")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grey_folder", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a new or empty folder")
    parser.add_argument("--source", choices=("digits", "fashion_mnist"), default="digits")
    parser.add_argument("--size", type=int, default=28, help="digits: image side in pixels (default 28)")
    parser.add_argument("--per-class", type=int, default=625, help="fashion_mnist: images per class (default 625)")
    parser.add_argument("--data", type=Path, default=Path("data"), help="fashion_mnist: paths.data_dir")
    args = parser.parse_args(argv)
    try:
        if args.source == "digits":
            count = write_digit_folder(args.root, args.size)
        else:
            count = write_fashion_folder(args.root, args.per_class, args.data)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count} grey 28x28 PNGs of {args.source} under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
