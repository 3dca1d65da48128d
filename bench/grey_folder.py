"""A real image folder of small grey images, made from the bundled digits, for `dataset=imagefolder`.

    python -m bench.grey_folder data/grey-digits            # 1,797 PNGs, 28x28, one folder per digit

The recipe of `dataset=imagefolder` was reported chaotic on a folder of 5,000 grey 28x28
handwritten digits trained at 16 px. No such folder can be downloaded here, so this writes the
closest thing that needs no download: scikit-learn's 1,797 real 8x8 digit scans, upsampled
(bilinear) to 28x28 8-bit grey PNGs in torchvision's ImageFolder layout (``root/<digit>/<n>.png``).
`python -m bench.recipe --dataset imagefolder` trains on it (docs/recipe.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digit_folder(root: Path, size: int = 28) -> int:
    """Write every bundled digit as a ``size`` x ``size`` grey PNG under ``root/<digit>/``; returns the count.

    Refuses a non-empty ``root`` so that a user's folder is never overwritten.
    """
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; give a new folder")
    digits = load_digits()
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = Image.fromarray(np.round(pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")
        target = root / str(label)
        target.mkdir(parents=True, exist_ok=True)
        grey.resize((size, size), Image.Resampling.BILINEAR).save(target / f"{index:04d}.png")
    return len(digits.target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grey_folder", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a new or empty folder")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels (default 28)")
    args = parser.parse_args(argv)
    try:
        count = write_digit_folder(args.root, args.size)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count} grey {args.size}x{args.size} PNGs under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
