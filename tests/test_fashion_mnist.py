"""Fashion-MNIST, the benchmark: read from Debian's original files, split without touching the test set.

These tests read the real 70,000 images that ``apt-get install dataset-fashion-mnist`` puts under
/usr/share/datasets/fashion-mnist (``make install`` and .ci/run install it where they run as root);
without the package they skip and say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import QUIET, compose_config
from unlearning.data.fashion_mnist import FASHION_SUPERCLASSES, FILES, SYSTEM_DIR, build_fashion_mnist
from unlearning.data.selection import SplitSettings, hold_out_validation
from unlearning.errors import UserError
from unlearning.jobs.builders import build_datamodule, build_task

INSTALLED = all((Path(SYSTEM_DIR) / f"{name}.gz").is_file() for name in FILES)
needs_files = pytest.mark.skipif(not INSTALLED, reason=f"Fashion-MNIST's files are not in {SYSTEM_DIR}: "
                                 "apt-get install dataset-fashion-mnist (make install does it as root)")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fashion-data")


@needs_files
def test_reads_the_original_files_once(data_dir):
    bundle = build_fashion_mnist(root=str(data_dir), download=False)
    assert (len(bundle.train_fine), len(bundle.test_fine)) == (60_000, 10_000)
    assert np.bincount(bundle.train_fine).tolist() == [6_000] * 10, "Fashion-MNIST is balanced"
    assert bundle.fine_names[7] == "Sneaker" and bundle.fine_names[0] == "T-shirt/top"
    coarse = bundle.coarse_of_fine()
    for index, members in enumerate(FASHION_SUPERCLASSES.values()):
        assert [coarse[bundle.fine_names.index(m)] for m in members] == [index] * len(members)
    raw = data_dir / "FashionMNIST" / "raw"
    stamps = {name: (raw / name).stat().st_mtime_ns for name in FILES}
    again = build_fashion_mnist(root=str(data_dir), download=False)
    assert {name: (raw / name).stat().st_mtime_ns for name in FILES} == stamps, "unpacked twice"
    assert np.array_equal(again.train_fine, bundle.train_fine)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        build_fashion_mnist(root=str(tmp_path), download=False, system_dir=str(tmp_path / "not-installed"))
    assert not any((tmp_path / "FashionMNIST" / "raw").glob("*ubyte")), "nothing half-written"


@needs_files
def test_benchmark_split_never_touches_the_test_set(data_dir):
    settings = SplitSettings.from_config({"validation": 500, "train": 5000, "test": 5000, "seed": 0})
    bundle = hold_out_validation(build_fashion_mnist(root=str(data_dir), download=False), settings)
    val_rows, train_rows = bundle.val_images.indices, bundle.train_images.indices
    assert (len(val_rows), len(train_rows), len(bundle.test_fine)) == (500, 5000, 5000)
    assert np.intersect1d(val_rows, train_rows).size == 0, "validation and D overlap"
    assert np.bincount(bundle.val_fine).tolist() == [50] * 10
    assert np.bincount(bundle.train_fine).tolist() == [500] * 10
    assert bundle.test_images.source is not bundle.train_images.source, "test rows come from the test files"
    again = hold_out_validation(build_fashion_mnist(root=str(data_dir), download=False), settings)
    assert np.array_equal(again.val_images.indices, val_rows), "the split must be fixed by its seed"


@needs_files
@pytest.mark.parametrize("task,forget,labels", [("fullclass", "boot", "fine"), ("subclass", "Sneaker", "coarse"),
                                                ("random", None, "fine")])
def test_benchmark_tasks(data_dir, task, forget, labels):
    overrides = [*QUIET, "dataset=fashion_mnist", f"paths.data_dir={data_dir}", f"task={task}"]
    overrides += [f"task.forget={forget}"] if forget else ["task.n_forget=500"]
    cfg = compose_config("unlearn", overrides)
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    assert data.label_kind == labels
    forget_rows, retain_rows = data.indices("forget"), data.indices("retain")
    assert len(forget_rows) + len(retain_rows) == 5000 and np.intersect1d(forget_rows, retain_rows).size == 0
    pixels = data.pixels("train")
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (5000, 1, 14, 14), "held as one 14 px tensor"
    fine = data.bundle.labels("fine", "train")
    names = data.bundle.fine_names
    if task == "random":
        assert len(forget_rows) == 500
    else:
        assert set(fine[forget_rows]) == {names.index("Ankle boot" if forget == "boot" else forget)}
        assert len(forget_rows) == 500, "a tenth of the stratified 5,000-image D"
        assert len(data.indices("forget_val")) == cfg.dataset.split.validation // 10 == 200, \
            "the class's stratified tenth of the 2,000-image validation split"
    if task == "subclass":  # the siblings keep the footwear label the sneakers shared
        coarse = data.bundle.labels("coarse", "train")
        assert set(coarse[forget_rows]) == {list(FASHION_SUPERCLASSES).index("footwear")}
