"""Experiment configs (the SSD paper's tables as sweeps) and the Optuna search compose and resolve.

Each experiment is composed with Hydra's compose API for every model and method it sweeps
(methods whose conf/method/NAME.yaml is not there yet are skipped), SSD's alpha and lambda
are checked against the paper's, and every forget target is turned into a real split of its
dataset (tiny CIFAR files in torchvision's format, digits, a generated image folder).
"""

from __future__ import annotations

import math
from functools import cache

import pytest
from omegaconf import OmegaConf
from PIL import Image

from tests.conftest import CONF, compose_config
from tests.fixtures.cifar_files import trust_generated_files, write_cifar10, write_cifar100
from unlearning.jobs.builders import build_datamodule, build_task
from unlearning.jobs.unlearn import objective

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
PAPER_TABLES = ("cifar100_fullclass", "cifar20_fullclass", "cifar20_subclass", "cifar10_random", "pins_fullclass")
PAPER_METHODS = {"baseline", "retrain", "finetune", "badteacher", "amnesiac", "unsir", "ssd"}
#: The JiT paper's tables (docs/zeroshot.md) run with its own models: the reference's VGG and ViT.
JIT_TABLES = ("jit_zeroshot", "jit_zeroshot_subclass", "jit_zeroshot_random")
#: The SSD paper's alpha per model and task (lambda 1), and PinsFaceRecognition's alpha 50, lambda 0.1.
PAPER_ALPHA = {"resnet18": {"fullclass": 10.0, "subclass": 10.0, "random": 10.0},
               "vit": {"fullclass": 5.0, "subclass": 25.0, "random": 5.0}}
PAPER_ALPHA["vgg"] = PAPER_ALPHA["resnet18"]  # no SSD value for the JiT reference's VGG: SSD's fallback, 10


@cache
def sweep_axes(name: str) -> dict[str, list[str]]:
    cfg = compose_config("unlearn", [f"experiment={name}"])
    return {key: [v.strip() for v in str(value).split(",")] for key, value in cfg.hydra.sweeper.params.items()}


def test_every_paper_table_has_a_digits_version():
    for table in PAPER_TABLES:
        assert table in EXPERIMENTS
    digits = [e for e in EXPERIMENTS if e.startswith("digits_")]
    assert len(digits) >= len(PAPER_TABLES)
    assert {"digits_fullclass", "digits_subclass", "digits_random"} <= set(digits)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sweeps_models_methods_targets_and_seeds(name):
    axes = sweep_axes(name)
    assert len(axes["seed"]) >= 3, "seeds are a sweep axis: mean and std need several"
    logger = compose_config("unlearn", [f"experiment={name}"]).logger
    assert logger is None or OmegaConf.is_dict(logger), "a logger is chosen with `override /logger: ...` in defaults"
    if name == "digits_zeroshot":  # one request (digit 3) over seeds: the zero-shot methods against retraining
        assert {"jit", "gkt", "emmn", "retrain", "ssd"} <= set(axes["method"]) and axes["model"] == ["resnet18"]
        assert compose_config("unlearn", [f"experiment={name}"]).evaluation.reference == "retrain"
        return
    if name.endswith("_poison"):  # Potion's grid: poison shares and identified shares, its methods and retraining
        cfg = compose_config("unlearn", [f"experiment={name}"])
        assert cfg.task.name == "poison" and len(axes["task.identified"]) >= 2
        assert {"baseline", "retrain", "ssd", "assd", "potion"} <= set(axes["method"])
        assert axes["model"] == (["resnet18"] if name.startswith("digits_") else ["resnet9"])
        assert name in str(cfg.hydra.sweep.dir)
        return
    if name.startswith("fashion_"):  # the benchmark's tables: SSD and LFSSD against retraining, over seeds
        cfg = compose_config("unlearn", [f"experiment={name}"])
        baselines = {"finetune", "amnesiac", "ga", "neggrad_plus", "l1sparse", "fisher"}
        expected = {"fashion_baselines": baselines,
                    "fashion_methods": PAPER_METHODS | baselines | {"lfssd", "scrub", "salun", "jit"}
                    }.get(name, {"ssd", "lfssd"})
        assert expected <= set(axes["method"]) and axes["model"] == ["resnet18"]
        assert cfg.dataset.name == "fashion_mnist" and cfg.evaluation.reference == "retrain"
        if name == "fashion_methods":  # one class, every method at its defaults, cold runs
            assert "task.forget" not in axes and cfg.task.forget == "Shirt" and cfg.cache is False
            assert "method.alpha" not in axes
        elif cfg.task.name == "fullclass":
            assert len(axes["task.forget"]) == 10 and set(axes["method.alpha"]) == {"10", "auto"}
        assert name in str(cfg.hydra.sweep.dir)
        return
    assert "ssd" in axes["method"] and "baseline" in axes["method"]
    assert PAPER_METHODS - {"unsir"} <= set(axes["method"])
    cfg = compose_config("unlearn", [f"experiment={name}"])
    if cfg.task.name == "random":
        assert "task.forget" not in axes and cfg.task.n_forget == 100
        assert "unsir" not in axes["method"], "UNSIR has no class to learn noise for in random forgetting"
    else:
        assert len(axes["task.forget"]) >= 3
    expected_models = ({"resnet18"} if name.startswith("digits_")
                       else {"vgg", "vit"} if name in JIT_TABLES else {"resnet18", "vit"})
    assert set(axes["model"]) == expected_models
    assert name in str(cfg.hydra.sweep.dir), "each experiment's multirun gets its own folder"


def experiment_methods() -> list[tuple[str, str]]:
    return [(name, method) for name in EXPERIMENTS for method in sweep_axes(name)["method"]]


@pytest.mark.parametrize("name,method", experiment_methods())
def test_experiment_composes_for_each_model_and_method(name, method):
    if not (CONF / "method" / f"{method}.yaml").is_file():
        pytest.skip(f"conf/method/{method}.yaml is not there yet")
    axes = sweep_axes(name)
    target = [f"task.forget={axes['task.forget'][0]}"] if "task.forget" in axes else []
    for model in axes["model"]:
        cfg = compose_config("unlearn", [f"experiment={name}", f"model={model}", f"method={method}", *target])
        for group in ("dataset", "model", "task", "method", "trainer", "paths"):
            assert cfg[group] is not None
        resolved = {k: v for k, v in cfg.method.items()}  # resolves every interpolation
        assert resolved["name"] == method and cfg.model.name == model
        if method in ("ssd", "lfssd"):
            pins = "pins" in name
            # tasks and models the SSD paper has no value for (poison; resnet9) get SSD's fallback, alpha 10
            assert cfg.method.alpha == (50.0 if pins else PAPER_ALPHA.get(model, {}).get(cfg.task.name, 10.0))
            assert cfg.method.lambda_ == (0.1 if pins else 1.0)


@pytest.fixture()
def data_roots(tmp_path, monkeypatch):
    """CIFAR-10 (130 train images: 117 after the validation split, enough for 100 random), CIFAR-100 files, a 41-class image folder."""
    root = tmp_path / "data"
    write_cifar10(root, per_class_train=13, per_class_test=1)
    write_cifar100(root, per_class_train=2, per_class_test=1)
    trust_generated_files(monkeypatch, root)
    faces = root / "105_classes_pins_dataset"
    for k in range(41):
        (faces / f"pins_person_{k:02d}").mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (6, 6), (5 * k, 40 * i, 90)).save(faces / f"pins_person_{k:02d}" / f"{i}.jpg")
    return tmp_path


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_forget_target_is_a_real_split(name, data_roots):
    """Each target of the sweep names a class of its dataset (a typo would fail here, not on a GPU)."""
    axes = sweep_axes(name)
    targets = axes.get("task.forget", [None])
    base = [f"experiment={name}", f"paths.root_dir={data_roots}", "dataset.num_workers=0"]
    cfg = compose_config("unlearn", base)
    if "download" in cfg.dataset.builder:
        base.append("dataset.builder.download=false")
    data = build_datamodule(compose_config("unlearn", base), task=None)
    data.setup()  # the dataset once; then each target's split of it, as unlearn.py makes it
    for target in targets:
        cfg = compose_config("unlearn", [*base, *([f"task.forget={target}"] if target else [])])
        task = build_task(cfg)
        label_kind = task.label_kind(data.bundle, cfg.dataset.labels)
        split = task.split(data.bundle, label_kind, cfg.dataset.aliases)
        assert len(split.forget_train) > 0 and len(split.retain_train) > 0
        if cfg.task.name == "random":
            assert len(split.forget_train) == cfg.task.n_forget
        elif cfg.task.name == "poison":  # Df: the identified part of the poisons the model was trained on
            poisons = task.corruption(data.bundle, data.input_size).indices
            assert set(split.forget_train) <= set(poisons) and len(split.forget_test) == 0
        elif cfg.task.name == "subclass":
            assert label_kind == "coarse" and split.description.startswith("sub-class")
        else:
            labels = data.bundle.labels(label_kind, "train")
            assert (labels[split.forget_train] == split.target).all() and len(split.forget_test) > 0


def test_hparams_search_is_an_optuna_tpe_search_over_alpha_and_lambda():
    cfg = compose_config("unlearn", ["hparams_search=ssd_optuna"])
    sweeper = cfg.hydra.sweeper
    # Optuna's TPE, seeded past the trials a persisted study already holds (unlearning.jobs.search)
    assert "Optuna" in sweeper._target_ and sweeper.sampler._target_ == "unlearning.jobs.search.resumable_tpe"
    assert str(sweeper.direction) in ("minimize", "Direction.minimize")
    assert sweeper.params["method.alpha"].replace(" ", "") == "tag(log,interval(0.1,100))"
    assert sweeper.params["method.lambda_"].replace(" ", "") == "interval(0.1,5)"
    assert cfg.method.name == "ssd"
    lfssd = compose_config("unlearn", ["hparams_search=ssd_optuna", "method=lfssd"])
    assert lfssd.method.name == "lfssd", "the command line picks the method to search"


def test_objective_rewards_forgetting_and_penalises_lost_retain_accuracy():
    """The search's objective reads the validation split only; the test split cannot move it."""
    before = {"retain_val_acc": 90.0, "forget_val_acc": 95.0, "forget_train_acc": 99.0, "val_acc": 90.5,
              "retain_test_acc": 90.0, "forget_test_acc": 95.0}
    forgot = {"retain_val_acc": 88.0, "forget_val_acc": 4.0, "forget_train_acc": 3.0, "val_acc": 80.0,
              "retain_test_acc": 50.0, "forget_test_acc": 70.0}
    assert objective(before, forgot) == pytest.approx(4.0 + 2 * 2.0)
    assert objective(before, {**forgot, "retain_test_acc": 99.0, "forget_test_acc": 0.0}) == objective(before, forgot)
    improved = {**forgot, "retain_val_acc": 91.0}
    assert objective(before, improved) == pytest.approx(4.0), "no bonus for retained accuracy gained"
    # Random forgetting: no forgotten class; the target is Df-train accuracy like unseen data, not 0 %.
    random_before = {**before, "forget_val_acc": math.nan}
    like_unseen = {"retain_val_acc": 89.0, "forget_val_acc": math.nan, "forget_train_acc": 88.0, "val_acc": 89.0}
    erased = {**like_unseen, "forget_train_acc": 0.0}
    assert objective(random_before, like_unseen) == pytest.approx(1.0 + 2 * 1.0)
    assert objective(random_before, erased) > objective(random_before, like_unseen)
