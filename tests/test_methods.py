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
from unlearning.methods.fisher import (
    per_sample_gradients,
    per_sample_gradients_loop,
    trainable,
    woodfisher,
    woodfisher_loop,
)
from unlearning.methods.l1sparse import l1_weight
from unlearning.methods.neggrad_plus import ForgetPairs, NegGradPlusModule
from unlearning.methods.salun import top_fraction_mask
from unlearning.methods.ssd.policies import finite_ratios, percentile, ratio_percentile, share_percentile
from unlearning.methods.training import Phase, PhasedLoader, other_labels

METHODS = ("baseline", "retrain", "finetune", "badteacher", "amnesiac", "unsir", "scrub", "salun", "ssd", "lfssd",
           "assd", "jit", "ga", "neggrad_plus", "l1sparse", "fisher")
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
    "salun": ["method.epochs=3"],  # its published lr 0.013 (0.05 took Dr-test to 54.5 / 80.5 / 62.8 % on seeds 0-2)
    # JiT runs at its defaults (training mode, the VGG lr 3e-4): test_jit_eval_mode_keeps_what_training_mode_loses
    # runs its other mode
    "assd": [],
    "baseline": [],
    # The reference's 5 epochs at lr 1e-4 take digit 3 only to Df-test 89.2 % (Dr-test 94.1 %); 10 epochs at 1e-3
    # forget it (measured seed 0: Df-test 97.3 -> 0.0 %, Dr-test 98.5 -> 82.4 %)
    "ga": ["method.epochs=10", "method.lr=1e-3"],
    # 3 of the 10 epochs: Df-test 97.3 -> 0.0 %, Dr-test 90.1 % (all 10: 0.0 % and 88.9 %, 31 s; seed 0)
    "neggrad_plus": ["method.epochs=3"],
    # gamma 5e-4 (our default; the reference leaves it open) forgets nothing on digits (Df-test 91.9 %, Dr-test
    # 98.8 %); 5e-3 over 5 epochs forgets a third (Df-test 64.9 %, Dr-test 91.3 %); 1e-2 forgets only by
    # collapsing Dr (Dr-test 41.8 %). Measured seed 0.
    "l1sparse": ["method.gamma=5e-3", "method.epochs=5"],
    # N = 20 instead of the reference's 1000: 22 per-sample gradients instead of 1002 (100 s here). The reference's
    # recursion barely changes v on digits: the step's norm is 0.2795015 either way (alpha 1).
    "fisher": ["method.woodfisher_n=20"],
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
    ("method=ga method.epochs=0", "method.epochs must be a positive number"),
    ("method=neggrad_plus method.alpha=1.5", r"method.alpha must be in \[0, 1\]"),
    ("method=neggrad_plus method.train_mode=maybe", "method.train_mode must be true or false"),
    ("method=l1sparse method.gamma=-1", "method.gamma must be a number >= 0"),
    ("method=l1sparse method.no_l1_epochs=10", "method.no_l1_epochs=10 leaves no epoch with the l1 penalty"),
    ("method=fisher method.variant=hessian", "method.variant='hessian' is unknown; valid: influence, noise"),
    ("method=fisher method.alpha=0", "method.alpha must be a positive number"),
    ("method=fisher method.woodfisher_n=0", "method.woodfisher_n must be a whole number >= 1"),
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
    assert share_percentile(146, 1437) == 100 - math.log(1 + 100 * 146 / 1437)
    full = {"w": torch.tensor([1.0, 2.0, 0.0, 0.0, 4.0])}
    forget = {"w": torch.tensor([3.0, 2.0, 5.0, 0.0, 0.0])}  # ratios 3, 1, inf, nan, 0: finite are 3, 1, 0
    assert ratio_percentile(finite_ratios(full, forget), 50.0) == pytest.approx(1.0)
    assert ratio_percentile(finite_ratios(full, forget), 100.0) == pytest.approx(3.0)


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


def test_woodfisher_matches_the_reference_loop_on_a_small_model():
    """Per-sample gradients (vmap and loop agree) and the scalar WoodFisher equal the reference's vector loop."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()
    with torch.no_grad():  # batch-norm statistics other than the defaults, so eval mode matters
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    images, labels = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))
    params = trainable(model)
    looped = per_sample_gradients_loop(model, params, images, labels)
    assert looped.shape == (12, sum(p.numel() for p in params))
    assert torch.allclose(per_sample_gradients(model, params, images, labels), looped, rtol=1e-5, atol=1e-6)
    v = torch.randn(looped.shape[1])
    for n in (1, 3, 50):  # n + 2 = 3 and 5 samples of 12 (the reference stops after idx > N), then all 12
        expected = woodfisher_loop(v.double(), looped.double(), n)
        product, used = woodfisher(v, [looped[:4], looped[4:9], looped[9:]], n)
        assert used == min(12, n + 2)
        assert torch.allclose(product.double(), expected, rtol=1e-4, atol=1e-6)
        assert torch.allclose(woodfisher_loop(v, looped, n).double(), expected, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(product, v, rtol=1e-3), "the product must change v (small n: large corrections)"
    # The reference's quirk: o is only ever rescaled, so the result is v minus a multiple of the first gradient
    first = looped[0].double()
    c = float((v.double() - expected) @ first / (first @ first))
    assert torch.allclose(v.double() - c * first, expected, rtol=1e-4, atol=1e-6)


def test_l1sparse_gamma_decays_linearly_to_zero():
    weights = [l1_weight(1e-3, epoch, 10) for epoch in range(12)]
    assert weights[0] == 1e-3 and weights[5] == pytest.approx(5e-4) and weights[9] == pytest.approx(1e-4)
    assert np.allclose(np.diff(weights[:10]), -1e-4)  # linear, the same step every epoch
    assert weights[10:] == [0.0, 0.0]                 # 0 from epoch epochs - no_l1_epochs on
    assert [l1_weight(1.0, epoch, 6, no_l1_epochs=2) for epoch in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert all(l1_weight(0.0, epoch, 5) == 0.0 for epoch in range(5))


def test_neggrad_plus_pairs_every_retain_sample_with_a_cycled_forget_sample():
    retain = torch.utils.data.TensorDataset(torch.arange(100, 123), torch.zeros(23, dtype=torch.long))
    forget = torch.utils.data.TensorDataset(torch.arange(5), torch.ones(5, dtype=torch.long))
    module = NegGradPlusModule(torch.nn.Linear(1, 1), forget, retain, batch_size=4, alpha=0.9, train_mode=True, seed=3)
    assert torch.equal(module.pairs(0).order, module.pairs(0).order), "the pairing must be reproducible"
    assert not torch.equal(module.pairs(0).order, module.pairs(1).order), "Df is reshuffled every epoch"
    batches = [batch for _, batch in PhasedLoader(module.phases(0), seed=3, epoch=0)]
    assert len(batches) == 6  # ceil(23 / 4): an epoch is a pass over Dr
    retained = [x for batch in batches for x in batch[0].tolist()]
    forgotten = [x for batch in batches for x in batch[2].tolist()]
    assert sorted(retained) == list(range(100, 123))
    assert all(batch[1].eq(0).all() and batch[3].eq(1).all() for batch in batches)
    counts = np.bincount(forgotten, minlength=5)
    assert counts.sum() == 23 and set(counts.tolist()) <= {4, 5}, "each Df sample floor or ceil of |Dr| / |Df| times"
    shards = [list(PhasedLoader(module.phases(0), seed=3, epoch=0, rank=rank, world=2)) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]), "every rank takes the same number of steps"
    assert {x for shard in shards for _, batch in shard for x in batch[0].tolist()} == set(range(100, 123))
    with pytest.raises(ValueError, match="permutation"):
        ForgetPairs(retain, forget, torch.tensor([0, 0, 1, 2, 3]))


# ------------------------------------------------------------- end to end
def test_baseline_changes_nothing(trained_root, digits_checkpoint, tmp_path):
    results = run_method(trained_root, tmp_path, "baseline")
    assert results["metrics"]["original"] == results["metrics"]["unlearned"]
    assert not weights_changed(tmp_path, digits_checkpoint)


# Thresholds from digit 3 on the digits models of training seeds 0, 1, 2 (Df-test has 37 images, 2.7 points
# each); the tests run seed 0. Measured with these settings (Df-test, Dr-test after; before: 97.3 % and
# 98.45 / 97.83 / 99.07 %):
#   badteacher (3 epochs): 64.9 / 62.2 / 64.9 and 97.5 / 97.8 / 97.8
#   assd: 97.3 / 94.6 / 64.9 and 98.5 / 96.9 / 99.4 -- Df-train 97.7 / 97.7 / 98.5 -> 91.6 / 90.1 / 62.6
#   jit (its defaults: training mode, lr 3e-4): 5.4 / 10.8 / 2.7 and 27.6 / 57.6 / 19.2 -- it forgets, and the
#     batch-norm statistics drift towards its noisy one-class batches (docs/methods.md) takes Dr-test with it
@pytest.mark.parametrize("method,min_drop,min_retain", [
    ("badteacher", 25.0, 95.0),
    # e2e (about 40 s): UNSIR's noise and phases; its refusals and config are in the default suite
    pytest.param("unsir", 10.0, 85.0, marks=pytest.mark.e2e),  # at impair lr 1e-3 (SHORT); measured Df-test 100 -> 16, Dr-test 95
    # ASSD's percentile alpha forgets digit 3's test images on one seed of three: its Df-train drop is checked below
    ("assd", 0.0, 95.0),
    ("jit", 75.0, 10.0),
])
def test_quick_methods_forget_a_digit(trained_root, digits_checkpoint, tmp_path, method, min_drop, min_retain):
    before = digest(digits_checkpoint)
    results = run_method(trained_root, tmp_path, method)
    check_forgets(results, min_drop, min_retain)
    original, unlearned = results["metrics"]["original"], results["metrics"]["unlearned"]
    if method == "assd":  # it dampens what Df alone needs: Df-train falls on every seed (by 6.1 to 35.9 points)
        assert unlearned["forget_train_acc"] <= original["forget_train_acc"] - 4.0, unlearned["forget_train_acc"]
    if method == "jit":
        assert results["config"]["method"]["train_mode"] is True, "the default mode is the one tested here"
    assert weights_changed(tmp_path, digits_checkpoint)
    assert digest(digits_checkpoint) == before, "the source checkpoint must never change"
    info = results["method_info"]
    if method == "badteacher":
        assert results["metrics"]["unlearned"]["zrf"] > results["metrics"]["original"]["zrf"]
        assert info["retain_samples"] == int(0.3 * results["n_retain"])
    if method == "assd":  # with imp_D as reference, ASSD is SSD at the percentile's alpha: same weights
        assert info["percentile"] == pytest.approx(share_percentile(results["n_forget"], 1293))
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


def test_jit_eval_mode_keeps_what_training_mode_loses(trained_root, tmp_path):
    """JiT's two modes on digit 3 (docs/methods.md): training mode, its default, moves the batch-norm
    statistics towards its noisy one-class batches; eval mode (``method.train_mode=false``) freezes them.

    Measured on seeds 0, 1, 2 at lr 1e-4 (Df-test before 97.3 %, Dr-test 98.45 / 97.83 / 99.07 %):
    training mode Df-test 5.4 / 10.8 / 2.7 %, Dr-test 26.6 / 55.1 / 18.9 %; eval mode Df-test 0.0 / 18.9 /
    0.0 %, Dr-test 90.4 / 89.8 / 72.1 %. Both forget; eval mode keeps 35-64 points more of Dr-test.
    """
    modes = {mode: run_method(trained_root, tmp_path / mode, "jit", "fullclass", f"method.train_mode={mode}",
                              "method.lr=1e-4") for mode in ("true", "false")}
    for results in modes.values():
        check_forgets(results, 60.0, 10.0)
    kept = {mode: r["metrics"]["unlearned"]["retain_test_acc"] for mode, r in modes.items()}
    assert kept["false"] >= kept["true"] + 20.0, kept
    assert kept["false"] >= 65.0, kept


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
    if method == "jit":  # at its defaults (training mode, sigma 0.01, lr 3e-4), 60 samples of 1.7 points each:
        # measured on seeds 0, 1, 2 Df-train 100.0 / 96.7 / 95.0 -> 86.7 / 91.7 / 88.3 %
        assert after["forget_train_acc"] <= before["forget_train_acc"] - 3.0, after["forget_train_acc"]


@pytest.mark.parametrize("method,overrides,min_drop,min_retain", [
    ("ga", [], 60.0, 75.0),            # at SHORT: measured Df-test 97.3 -> 0.0, Dr-test 98.5 -> 82.4 (2 s)
    ("neggrad_plus", [], 60.0, 82.0),  # at SHORT: measured Df-test 97.3 -> 0.0, Dr-test 98.5 -> 90.1 (9 s)
    ("l1sparse", [], 20.0, 85.0),      # at SHORT: measured Df-test 97.3 -> 64.9, Dr-test 98.5 -> 91.3 (9 s)
    # alpha 1 (the reference's 0.2 moves nothing: Df-test 97.3 -> 97.3); measured Df-test 97.3 -> 0.0, Dr-test 89.2 (10 s)
    pytest.param("fisher", ["method.variant=influence", "method.alpha=1.0"], 60.0, 80.0, id="fisher-influence"),
    # Fisher noise forgets digit 3 at no alpha without collapsing Dr (docs/methods.md: alpha 7e-7 leaves Df-test at
    # 81-100 % with Dr-test at 67-75 %); at its default 1e-7 it keeps Dr (measured Df-test 97.3 -> 97.3, Dr-test
    # 97.5, 21 s). So: Df must not rise and Dr must stay, and the weights must move.
    pytest.param("fisher", ["method.variant=noise"], 0.0, 95.0, id="fisher-noise"),
])
def test_baselines_forget_a_digit(trained_root, digits_checkpoint, tmp_path, method, overrides, min_drop, min_retain):
    before = digest(digits_checkpoint)
    results = run_method(trained_root, tmp_path, method, "fullclass", *overrides)
    check_forgets(results, min_drop, min_retain)
    assert weights_changed(tmp_path, digits_checkpoint)
    assert digest(digits_checkpoint) == before, "the source checkpoint must never change"
    info = results["method_info"]
    if method in ("ga", "neggrad_plus"):
        assert info["forget_samples"] == results["n_forget"]
    if method == "l1sparse":
        assert info["gamma_by_epoch"] == pytest.approx([5e-3, 4e-3, 3e-3, 2e-3, 1e-3])
    if method == "fisher" and info["variant"] == "influence":
        assert (info["forget_samples"], info["retain_samples"]) == (results["n_forget"], results["n_retain"])
        assert info["woodfisher_samples"] == 22 and info["alpha"] == 1.0 and info["step_norm"] > 0
    if method == "fisher" and info["variant"] == "noise":
        assert info["alpha"] == 1e-7 and info["fisher_batches"] == math.ceil(results["n_retain"] / 32)
        assert info["noise_norm"] > 0


# Run by CI: finetune and amnesiac in the default suite (24 and 32 s alone on 2 busy cores), retrain in the
# e2e tier (93 s there): the headline claim that they forget (or, for fine-tuning, keep Dr), at short
# settings. SCRUB and SalUn in the e2e tier too.
@pytest.mark.parametrize("method,min_drop,min_retain", [
    pytest.param("retrain", 90.0, 70.0, marks=pytest.mark.e2e),  # 6 of the 8 epochs: Df-test 0 %
    # Fine-tuning on Dr alone does not forget a digit the model generalises to (2 epochs: Df-test
    # 100 -> 97.3 %; at its defaults 83.8 / 62.2 / 94.6 % over seeds 0-2, README): it must keep Dr
    # and not raise Df, not forget.
    ("finetune", 0.0, 90.0),
    ("amnesiac", 20.0, 90.0),
    pytest.param("scrub", 50.0, 85.0, marks=pytest.mark.e2e),
    # 3 epochs at lr 0.013, digit 3 on seeds 0 / 1 / 2: Df-test 97.3 -> 40.5 / 2.7 / 18.9 %, Dr-test 96.3 / 94.7 / 96.9 %
    pytest.param("salun", 40.0, 90.0, marks=pytest.mark.e2e),
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
