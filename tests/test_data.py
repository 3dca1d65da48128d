"""Datasets, forgetting tasks and their invariants on digits and on CIFAR files in torchvision's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import QUIET, compose_config
from unlearning.data.cifar import build_cifar10, build_cifar100
from unlearning.data.digits import DIGIT_SUPERCLASSES, build_digits
from unlearning.data.splits import FullClassTask, RandomTask, SubClassTask
from unlearning.errors import UserError
from unlearning.jobs.builders import build_datamodule, build_task


def datamodule(overrides: list[str]):
    cfg = compose_config("unlearn", [*QUIET, *overrides])
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    return data


def assert_split_invariants(data) -> None:
    retain, forget = data.indices("retain"), data.indices("forget")
    full = data.indices("full")
    assert np.intersect1d(retain, forget).size == 0, "Dr and Df overlap"
    assert np.array_equal(np.sort(np.concatenate([retain, forget])), full), "Dr + Df != D"
    assert len(forget) > 0 and len(retain) > 0
    retain_t, forget_t = data.indices("retain_test"), data.indices("forget_test")
    assert np.intersect1d(retain_t, forget_t).size == 0


def test_digits_is_real_and_stratified():
    bundle = build_digits()
    assert len(bundle.train_fine) + len(bundle.test_fine) == 1797
    assert len(bundle.test_fine) == 360
    train_share = np.bincount(bundle.train_fine) / len(bundle.train_fine)
    test_share = np.bincount(bundle.test_fine) / len(bundle.test_fine)
    assert np.abs(train_share - test_share).max() < 0.01
    assert np.array_equal(build_digits().train_fine, bundle.train_fine), "split must be fixed"
    coarse = bundle.coarse_of_fine()
    for index, members in enumerate(DIGIT_SUPERCLASSES.values()):
        assert all(coarse[m] == index for m in members)


@pytest.mark.parametrize("task,forget", [("fullclass", "3"), ("fullclass", 7), ("subclass", "5"), ("random", None)])
def test_digits_split_invariants(task, forget):
    overrides = [f"task={task}"] + ([f"task.forget={forget}"] if forget is not None else ["task.n_forget=50"])
    data = datamodule(overrides)
    assert_split_invariants(data)
    again = datamodule(overrides)
    for split in ("retain", "forget", "retain_test", "forget_test"):
        assert np.array_equal(data.indices(split), again.indices(split)), "splits must be deterministic"
    if task == "fullclass":
        assert set(data.labels_of("forget")) == {int(forget)}
        assert int(forget) not in set(data.labels_of("retain"))
        assert set(data.labels_of("forget_test")) == {int(forget)}
    if task == "subclass":
        assert data.label_kind == "coarse" and data.num_classes == 5
        assert set(data.labels_of("forget")) == {2}  # digit 5 lies in four_five
        fine = data.bundle.train_fine[data.indices("forget")]
        assert set(fine) == {5}
        assert 4 in set(data.bundle.train_fine[data.indices("retain")])
    if task == "random":
        assert len(data.indices("forget")) == 50
        assert len(set(data.labels_of("forget"))) > 5, "random forgetting draws across classes"
        assert len(data.indices("forget_test")) == 0
        assert len(data.indices("retain_test")) == 360


def test_random_split_depends_on_seed():
    a = datamodule(["task=random", "task.n_forget=40", "task.seed=1"])
    b = datamodule(["task=random", "task.n_forget=40", "task.seed=2"])
    assert not np.array_equal(a.indices("forget"), b.indices("forget"))
    c = datamodule(["task=random", "task.fraction=0.1", "task.n_forget=null"])
    assert len(c.indices("forget")) == round(0.1 * 1293)


def test_loaders_yield_images_of_the_model_size():
    data = datamodule(["model=vit_tiny"])
    images, labels = next(iter(data.loader("forget", batch_size=4)))
    assert images.shape == (4, 1, 16, 16) and images.dtype == torch.float32
    assert set(labels.tolist()) == {3}
    upsampled = datamodule(["dataset.image_size=32"])
    assert next(iter(upsampled.loader("test", batch_size=2)))[0].shape == (2, 1, 32, 32)
    native = datamodule([])
    assert next(iter(native.loader("test", batch_size=2)))[0].shape == (2, 1, 8, 8)


def test_cifar_files_in_torchvision_format(cifar_root):
    c10 = build_cifar10(root=str(cifar_root), download=False)
    assert c10.fine_names[0] == "airplane" and len(c10.train_fine) == 60
    assert c10.train_images[0].size == (32, 32)
    c100 = build_cifar100(root=str(cifar_root), download=False)
    assert len(c100.fine_names) == 100 and len(c100.coarse_names) == 20
    rocket = c100.fine_names.index("rocket")
    assert c100.coarse_names[c100.coarse_of_fine()[rocket]] == "vehicles_2"


@pytest.mark.parametrize("overrides,forget_label,kind,classes", [
    (["dataset=cifar100", "task.forget=rocket"], "rocket", "fine", 100),
    (["dataset=cifar100", "task.forget=mushroom"], "mushroom", "fine", 100),
    (["dataset=cifar20", "task.forget=vehicle2"], "vehicles_2", "coarse", 20),
    (["dataset=cifar20", "task.forget=veg"], "fruit_and_vegetables", "coarse", 20),
    (["dataset=cifar20", "task.forget=natural_scenes"], "large_natural_outdoor_scenes", "coarse", 20),
    (["dataset=cifar20", "task.forget=people"], "people", "coarse", 20),
    (["dataset=cifar10", "task.forget=cat"], "cat", "fine", 10),
])
def test_cifar_fullclass_by_name_and_alias(cifar_root, overrides, forget_label, kind, classes):
    data = datamodule([*overrides, f"paths.data_dir={cifar_root}"])
    assert data.label_kind == kind and data.num_classes == classes
    assert_split_invariants(data)
    target = data.class_names.index(forget_label)
    assert set(data.labels_of("forget")) == {target}
    assert target not in set(data.labels_of("retain"))


@pytest.mark.parametrize("dataset", ["cifar100", "cifar20"])
def test_cifar_subclass_rocket_inside_vehicles_2(cifar_root, dataset):
    data = datamodule([f"dataset={dataset}", "task=subclass", "task.forget=rocket", f"paths.data_dir={cifar_root}"])
    assert data.label_kind == "coarse" and data.num_classes == 20
    assert_split_invariants(data)
    vehicles_2 = data.class_names.index("vehicles_2")
    assert set(data.labels_of("forget")) == {vehicles_2}
    assert set(data.labels_of("forget_test")) == {vehicles_2}
    rocket = data.bundle.fine_names.index("rocket")
    assert set(data.bundle.test_fine[data.indices("forget_test")]) == {rocket}
    retained_fine = set(data.bundle.train_fine[data.indices("retain")])
    assert rocket not in retained_fine and data.bundle.fine_names.index("tank") in retained_fine


def test_cifar10_random_forgetting(cifar_root):
    data = datamodule(["dataset=cifar10", "task=random", "task.n_forget=12", f"paths.data_dir={cifar_root}"])
    assert_split_invariants(data)
    assert len(data.indices("forget")) == 12


@pytest.mark.parametrize("task,bundle_builder,message", [
    (FullClassTask("seven"), build_digits, "unknown class 'seven'.*Valid names: 0, 1, 2"),
    (FullClassTask(10), build_digits, "index 10 is out of range.*0..9"),
    (FullClassTask(-1), build_digits, "index -1 is out of range"),
    (SubClassTask("eleven"), build_digits, "unknown sub-class 'eleven'"),
    (RandomTask(n_forget=0), build_digits, "n_forget=0 is impossible.*between 1 and 1436"),
    (RandomTask(n_forget=5000), build_digits, "n_forget=5000 is impossible.*1437 training samples"),
    (RandomTask(fraction=1.5), build_digits, "fraction must lie strictly between 0 and 1"),
])
def test_bad_targets_explain_what_is_valid(task, bundle_builder, message):
    bundle = bundle_builder()
    with pytest.raises(UserError, match=message):
        task.split(bundle, task.label_kind(bundle, "fine"))


def test_subclass_needs_coarse_labels(cifar_root):
    with pytest.raises(UserError, match="task=subclass needs a dataset with coarse labels.*cifar100"):
        datamodule(["dataset=cifar10", "task=subclass", "task.forget=cat", f"paths.data_dir={cifar_root}"])


def test_unknown_cifar100_class_lists_the_names(cifar_root):
    with pytest.raises(UserError, match="unknown class 'rockett'.*rocket"):
        datamodule(["dataset=cifar100", "task.forget=rockett", f"paths.data_dir={cifar_root}"])


def test_missing_cifar_files_say_what_to_put_where(tmp_path):
    with pytest.raises(UserError, match=r"cifar-10-batches-py.*Download cifar-10-python.tar.gz"):
        build_cifar10(root=str(tmp_path / "nothing"), download=False)


def test_imagefolder_split(tmp_path):
    from PIL import Image

    from unlearning.data.imagefolder import build_imagefolder

    rng = np.random.default_rng(0)
    for cls in ("alice", "bob", "carol"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    bundle = build_imagefolder(str(tmp_path), image_size=12, test_fraction=0.4)
    assert bundle.fine_names == ["alice", "bob", "carol"]
    assert len(bundle.train_fine) == 9 and len(bundle.test_fine) == 6
    assert bundle.train_images[0].size == (12, 12)
    split = FullClassTask("bob").split(bundle, "fine")
    assert set(bundle.train_fine[split.forget_train]) == {1}


def test_grey_digit_folder_is_a_real_image_folder(tmp_path):
    """bench.grey_folder writes the bundled digits as 28x28 grey PNGs that dataset=imagefolder reads as RGB."""
    from bench.grey_folder import main as write_folder
    from unlearning.data.imagefolder import build_imagefolder

    assert write_folder([str(tmp_path / "grey")]) == 0
    bundle = build_imagefolder(str(tmp_path / "grey"), image_size=16)
    assert bundle.fine_names == [str(d) for d in range(10)]
    assert len(bundle.train_fine) + len(bundle.test_fine) == 1797
    image = bundle.train_images[0]
    assert image.mode == "RGB" and image.size == (28, 28)  # resized to image_size by the transforms, not here
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and pixels.max() > 200 and pixels.min() == 0
    # a folder that holds anything is never written into
    assert write_folder([str(tmp_path / "grey")]) == 2
