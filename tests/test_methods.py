"""Every unlearning method end to end on digits, plus the pieces they share.

End-to-end runs go through the real pipeline (:func:`unlearning.jobs.unlearn.unlearn`) on
the session-trained digits ResNet18 and check that each method moves the model the way it
is meant to. Tests shorten the methods with overrides; the published defaults stay in
``conf/method/*.yaml``. The quick ones run by default, the rest are marked ``slow``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import load_file

from tests.conftest import QUIET, compose_config, published_path, run_cli
from unlearning.errors import UserError
from unlearning.jobs.unlearn import build_method, unlearn
from unlearning.methods.salun import top_fraction_mask
from unlearning.methods.ssd.policies import adaptive_alpha, adaptive_percentile, percentile
from unlearning.methods.training import Phase, PhasedLoader, other_labels

METHODS = ("baseline", "retrain", "finetune", "badteacher", "amnesiac", "unsir", "scrub", "salun", "ssd", "lfssd",
           "assd", "jit")
TASKS = ("fullclass", "subclass", "random", "poison", "mislabel")

#: Overrides that keep a test run short (the published defaults stay in the YAML files).
SHORT = {
    "retrain": ["method.epochs=6"],
    "finetune": ["method.epochs=2"],
    "badteacher": ["method.epochs=3"],
    "amnesiac": ["method.epochs=1"],
    # impair lr 1e-3: the reference's 1e-4 leaves digit 3 at 100 % on the 99 % digits model
    "unsir": ["method.noise_batches=20", "method.samples_per_class=100", "method.impair_lr=1e-3"],
    # lr 2e-3: the reference's 5e-4 leaves digit 3 at 97 % (README's table); 1e-2 forgot it but took Dr-test
    # to 72.8 %, 2e-3 forgot it (Df-test 0 %) and kept Dr-test at 97.5 % (seed 0, measured)
    "scrub": ["method.epochs=2", "method.lr=0.002"],
    "salun": ["method.epochs=3", "method.lr=0.05"],
    # eval mode, as these figures were measured (the default is the reference's training mode), and lr 1e-4: the VGG
    # value 3e-4 collapses the 8-epoch digits model (Dr-test 21 %; 3e-5 forgets nothing; measured seed 0, digit 3)
    "jit": ["method.train_mode=false", "method.lr=1e-4"],
    "assd": [],
    "baseline": [],
}
TASK_OVERRIDES = {"fullclass": ["task.forget=3"], "subclass": ["task.forget=3"], "random": ["task.n_forget=60"]}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_method(root: Path, run_dir: Path, method: str, task: str = "fullclass", *overrides: str) -> dict:
    """One in-process unlearning run through the real pipeline, with the test's short settings."""
    cfg = compose_config("unlearn", [f"paths.root_dir={root}", f"method={method}", f"task={task}", *QUIET,
                                     *TASK_OVERRIDES[task], *SHORT.get(method, []), *overrides])
    with open_dict(cfg):
        cfg.pop("hydra", None)  # no Hydra run in-process: nothing to record under hydra
    results = unlearn(cfg, run_dir)
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    assert results["method"] == method and results["method_time_s"] > 0 and results["evaluation_time_s"] > 0
    return results


def check_forgets(results: dict, min_drop: float, min_retain_test: float) -> None:
    """Df accuracy falls by at least ``min_drop`` points while Dr-test accuracy stays above ``min_retain_test``."""
    before, after = results["metrics"]["original"], results["metrics"]["unlearned"]
    key = "forget_test_acc" if results["task"] != "random" else "forget_train_acc"
    assert after[key] <= before[key] - min_drop, (f"{results['method']}: {key} {before[key]:.1f} -> {after[key]:.1f}, "
                                                  f"expected a drop of {min_drop}")
    assert after["retain_test_acc"] >= min_retain_test, (
        f"{results['method']}: Dr-test accuracy fell to {after['retain_test_acc']:.1f}")


def weights_changed(run_dir: Path, source: Path) -> bool:
    new = load_file(str(run_dir / "unlearned" / "model.safetensors"))
    old = load_file(str(source / "model.safetensors"))
    return any(not torch.equal(new[name], old[name]) for name in old)


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize("model", ["resnet18", "vit"])
def test_every_method_builds_and_names_the_tasks_it_refuses(model):
    """Each method builds from its YAML; a task it cannot do is refused with the tasks it can."""
    for method in METHODS:
        built = build_method(compose_config("unlearn", [f"method={method}", f"model={model}", "dataset=cifar10"]))
        for task in TASKS:
            if method == "unsir" and task not in ("fullclass", "subclass"):
                with pytest.raises(UserError, match=rf"method=unsir does not support task={task}.*fullclass, subclass"
                                                    r".*no class of their own"):
                    built.check_task(task)
            else:
                built.check_task(task)


def test_model_specific_defaults_come_from_the_model_config():
    vit_full = build_method(compose_config("unlearn", ["method=jit", "model=vit"]))
    vit_sub = build_method(compose_config("unlearn", ["method=jit", "model=vit", "task=subclass", "dataset=cifar100",
                                                      "task.forget=rocket"]))
    vit_random = build_method(compose_config("unlearn", ["method=jit", "model=vit", "task=random"]))
    assert (vit_full.sigma, vit_full.lr) == (0.8, 1.5)
    assert (vit_sub.sigma, vit_sub.lr, vit_sub.batch_size) == (1.5, 0.5, 64)
    assert (vit_random.sigma, vit_random.lr) == (0.5, 0.1)
    assert build_method(compose_config("unlearn", ["method=badteacher", "model=vit"])).batch_size == 128
    assert build_method(compose_config("unlearn", ["method=badteacher"])).batch_size == 256
    unsir = build_method(compose_config("unlearn", ["method=unsir"]))
    assert unsir.noise_steps == {"fullclass": 25, "subclass": 250}
    assert build_method(compose_config("unlearn", ["method=retrain"])).epochs is None  # = the dataset schedule


@pytest.mark.parametrize("override,message", [
    ("method=finetune method.lr=0", "method.lr must be a positive number"),
    ("method=salun method.mask_ratio=1.5", "method.mask_ratio"),
    ("method=amnesiac method.optimizer=rmsprop", "method.optimizer='rmsprop' is unknown"),
])
def test_bad_hyperparameters_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        build_method(compose_config("unlearn", override.split()))


def test_unsir_refuses_random_forgetting_before_any_work(trained_root, tmp_path):
    with pytest.raises(UserError, match="method=unsir does not support task=random"):
        run_method(trained_root, tmp_path, "unsir", "random")
    assert not (tmp_path / "results.json").exists()


# ------------------------------------------------------------- shared pieces
def test_assd_percentile_matches_numpy_and_the_formula():
    values = torch.rand(1001, generator=torch.Generator().manual_seed(0))
    for p in (0.0, 12.5, 50.0, 97.6, 100.0):
        assert percentile(values, p) == pytest.approx(float(np.percentile(values.numpy(), p)), rel=1e-6)
    assert adaptive_percentile(146, 1437) == pytest.approx(100 - math.log(1 + 100 * 146 / 1437))
    full = {"w": torch.tensor([1.0, 2.0, 0.0, 0.0, 4.0])}
    forget = {"w": torch.tensor([3.0, 2.0, 5.0, 0.0, 0.0])}  # ratios 3, 1, inf, nan, 0: finite are 3, 1, 0
    assert adaptive_alpha(full, forget, 50.0) == pytest.approx(1.0)
    assert adaptive_alpha(full, forget, 100.0) == pytest.approx(3.0)


def test_other_labels_never_repeat_the_own_label():
    labels = torch.arange(10).repeat(50)
    wrong = other_labels(labels, 10, torch.Generator().manual_seed(1))
    assert not torch.any(wrong == labels) and wrong.min() >= 0 and wrong.max() <= 9
    assert len(torch.unique(wrong)) == 10


def test_salun_mask_keeps_the_largest_fraction_globally():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[4.0, 0.0], [2.0, 6.0]])}
    masks = top_fraction_mask(scores, 0.5)
    assert masks["a"].tolist() == [True, False, False]
    assert masks["b"].tolist() == [[True, False], [False, True]]


def test_phased_loader_runs_phases_in_order_and_shards_without_loss():
    forget = torch.utils.data.TensorDataset(torch.arange(10))
    retain = torch.utils.data.TensorDataset(torch.arange(100, 135))
    phases = [Phase("forget", forget, 4), Phase("retain", retain, 8)]
    names = [name for name, _ in PhasedLoader(phases, seed=0, epoch=0)]
    assert names == ["forget"] * 3 + ["retain"] * 5
    first = [batch[0].tolist() for _, batch in PhasedLoader(phases, seed=0, epoch=0)]
    again = [batch[0].tolist() for _, batch in PhasedLoader(phases, seed=0, epoch=0)]
    other_epoch = [batch[0].tolist() for _, batch in PhasedLoader(phases, seed=0, epoch=1)]
    assert first == again and first != other_epoch
    seen = []
    lengths = set()
    for rank in range(2):
        shard = list(PhasedLoader(phases, seed=0, epoch=0, rank=rank, world=2))
        lengths.add(tuple(name for name, _ in shard))
        seen += [x for _, batch in shard for x in batch[0].tolist()]
    assert len(lengths) == 1, "every rank must take the same steps in the same phases"
    assert set(seen) == set(range(10)) | set(range(100, 135))


# ------------------------------------------------------------- end to end
def test_baseline_changes_nothing(trained_root, digits_checkpoint, tmp_path):
    results = run_method(trained_root, tmp_path, "baseline")
    assert results["metrics"]["original"] == results["metrics"]["unlearned"]
    assert not weights_changed(tmp_path, digits_checkpoint)


@pytest.mark.parametrize("method,min_drop,min_retain", [
    ("badteacher", 2.0, 90.0),
    # slow (about 40 s): UNSIR's noise and phases; its refusals and config are in the default suite
    pytest.param("unsir", 10.0, 85.0, marks=pytest.mark.slow),  # at impair lr 1e-3 (SHORT); measured Df-test 100 -> 16, Dr-test 95
    ("assd", 0.0, 80.0),    # ASSD's percentile alpha does not forget digit 3 here: checked against SSD below
    ("jit", 25.0, 80.0),    # JiT at lr 1e-4 (SHORT); measured Df-test 97 -> 0, Dr-test 90.4
])
def test_quick_methods_forget_a_digit(trained_root, digits_checkpoint, tmp_path, method, min_drop, min_retain):
    before = digest(digits_checkpoint)
    results = run_method(trained_root, tmp_path, method)
    check_forgets(results, min_drop, min_retain)
    assert weights_changed(tmp_path, digits_checkpoint)
    assert digest(digits_checkpoint) == before, "the source checkpoint must never change"
    info = results["method_info"]
    if method == "badteacher":
        assert results["metrics"]["unlearned"]["zrf"] > results["metrics"]["original"]["zrf"]
        assert info["retain_samples"] == int(0.3 * results["n_retain"])
    if method == "assd":  # with imp_D as reference, ASSD is SSD at the percentile's alpha: same weights
        assert info["percentile"] == pytest.approx(adaptive_percentile(results["n_forget"], 1293))
        assert info["alpha"] > 0 and info["parameters_changed"] > 0 and info["reference_split"] == "retain"
        assert set(info["importance_cache"]) == {"retain", "forget"}  # ASSD now uses the importance cache
        on_d = run_method(trained_root, tmp_path / "on_d", "assd", "fullclass", "method.reference_split=full")["method_info"]
        ssd = run_method(trained_root, tmp_path / "ssd", "ssd", "fullclass", f"method.alpha={on_d['alpha']!r}")
        assert ssd["method_info"]["parameters_changed"] == on_d["parameters_changed"]
        assd_weights = load_file(str(tmp_path / "on_d" / "unlearned" / "model.safetensors"))
        ssd_weights = load_file(str(tmp_path / "ssd" / "unlearned" / "model.safetensors"))
        assert ssd_weights.keys() == assd_weights.keys()
        assert all(torch.equal(ssd_weights[name], assd_weights[name]) for name in assd_weights)
    if method == "unsir":
        assert info["forgotten_label"] == 3 and info["noise_samples"] == 32 * 20
        assert info["retained_samples"] == 9 * 100


# badteacher on sub-class is slow (about 25 s): sub-class mechanics stay in test_unlearn_in_process[ssd-subclass-5]
@pytest.mark.parametrize("method,task", [pytest.param("badteacher", "subclass", marks=pytest.mark.slow), ("jit", "random")])
def test_quick_methods_on_subclass_and_random_tasks(trained_root, tmp_path, method, task):
    results = run_method(trained_root, tmp_path, method, task)
    assert results["task"] == task
    if task == "subclass":
        assert results["label_kind"] == "coarse" and results["forget"] == "sub-class 3 of two_three"
    else:
        assert results["n_forget"] == 60
    before, after = results["metrics"]["original"], results["metrics"]["unlearned"]
    assert after["forget_train_acc"] < before["forget_train_acc"]


@pytest.mark.slow
@pytest.mark.parametrize("method,min_drop,min_retain", [
    ("retrain", 90.0, 70.0),  # 6 of the 20 epochs: measured Dr-test 80.5%, Df-test 0%
    # Fine-tuning on Dr alone does not forget a digit the model generalises to (2 epochs: Df-test
    # 100 -> 97.3 %; at its defaults 83.8 / 62.2 / 94.6 % over seeds 0-2, README): it must keep Dr
    # and not raise Df, not forget.
    ("finetune", 0.0, 90.0),
    ("amnesiac", 20.0, 90.0),
    ("scrub", 50.0, 85.0),
    ("salun", 50.0, 70.0),  # at lr 0.05 SalUn costs Dr accuracy on digits (measured 77% Dr-test)
])
def test_training_methods_forget_a_digit(trained_root, digits_checkpoint, tmp_path, method, min_drop, min_retain):
    before = digest(digits_checkpoint)
    results = run_method(trained_root, tmp_path, method)
    check_forgets(results, min_drop, min_retain)
    assert digest(digits_checkpoint) == before
    if method == "retrain":
        assert results["method_info"]["epochs"] == 6 and results["method_info"]["augment"] is True


@pytest.mark.slow
@pytest.mark.parametrize("task", ["subclass", "random"])
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("baseline", "ssd", "lfssd")])
def test_every_method_runs_subclass_and_random(trained_root, tmp_path, method, task):
    if method == "unsir" and task == "random":
        pytest.skip("UNSIR refuses random forgetting (tested above)")
    results = run_method(trained_root, tmp_path, method, task)
    after = results["metrics"]["unlearned"]
    assert all(math.isfinite(after[key]) for key in ("retain_test_acc", "forget_train_acc", "mia", "zrf"))
    assert weights_changed(tmp_path, published_path(trained_root, labels="coarse" if task == "subclass" else "fine"))


@pytest.mark.slow
@pytest.mark.distributed
def test_training_method_runs_under_ddp(trained_root, tmp_path):
    """A phased training method on 2 CPU processes (gloo): sharded phases, one result written by rank 0."""
    run_dir = tmp_path / "run"
    result = run_cli("unlearn.py", *QUIET, "method=salun", "method.epochs=2", "method.lr=0.05", "trainer=ddp",
                     f"hydra.run.dir={run_dir}", root=trained_root)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    before, after = results["metrics"]["original"], results["metrics"]["unlearned"]
    assert after["forget_test_acc"] < before["forget_test_acc"]
    assert results["method_info"]["salient_parameters"] == results["method_info"]["parameters_total"] // 2
