"""Poison and mislabel unlearning on real digits: the corrupted views, Potion's PTN search, bad input.

Potion's search is checked against its reference code's loop (if-loops/towards_poison_unlearning,
``XALFSSD.unlearn`` + ``alfssd_tuning``): importances over Dr and Df once, per try the
p = 100 - ln(1 + 100 s) percentile of the finite ratios, dampen, stop at Df accuracy <= rho x before.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from tests.conftest import compose_config
from tests.test_cache import context, small_cnn
from unlearning.data.corruption import maximum_normalised_value, task_corruption_key
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.digits import build_digits
from unlearning.data.splits import MislabelTask, PoisonTask
from unlearning.errors import UserError
from unlearning.evaluation.corruption import corruption_metrics
from unlearning.jobs.builders import build_method
from unlearning.methods.ssd import SSD, PTNSearch
from unlearning.methods.ssd.policies import dataset_accuracy


def poisoned_digits(share: float = 0.05, identified: float = 0.5, seed: int = 0, **poison) -> UnlearningDataModule:
    task = PoisonTask({"share": share, "seed": seed, **poison}, identified=identified, identified_seed=seed)
    data = UnlearningDataModule(build_digits, task, eval_batch_size=512)
    data.setup()
    return data


def test_poisoned_views_carry_the_trigger_and_the_target_label():
    data = poisoned_digits()
    corruption = data.corruption
    n_train = len(data.bundle.train_fine)
    assert len(corruption.indices) == round(0.05 * n_train) and corruption.target == 0
    assert (data.bundle.train_fine[corruption.indices] == 0).all(), "poisons are trained with the target label"
    assert (corruption.true_labels != data.bundle.train_fine).sum() > 0
    value = maximum_normalised_value(data.bundle.mean, data.bundle.std)
    assert corruption.trigger.size == 1 and corruption.trigger.value == pytest.approx(value)
    full = data.dataset("full")
    poisoned, clean = int(corruption.indices[0]), int(np.flatnonzero(~corruption.mask)[0])
    assert full[poisoned][0][0, -1, -1] == pytest.approx(value) and full[poisoned][1] == 0
    assert full[clean][0][0, -1, -1] != pytest.approx(value), "clean images are untouched"
    # the identified poisons are Df; the others stay in Dr, still triggered and relabelled
    forget, retain = data.indices("forget"), data.indices("retain")
    assert set(forget) <= set(corruption.indices) and len(forget) == int(0.5 * len(corruption.indices) + 0.5)
    hidden = np.setdiff1d(corruption.indices, forget)
    assert set(hidden) <= set(retain) and len(hidden) > 0
    # the triggered test set: every image triggered, true labels; the plain test set untouched
    triggered, plain = data.dataset("triggered_test"), data.dataset("test")
    assert triggered[0][1] == plain[0][1] == data.bundle.test_fine[0]
    assert triggered[0][0][0, -1, -1] == pytest.approx(value) and plain[0][0][0, -1, -1] != pytest.approx(value)
    # the trigger stays in the corner under augmentation (pasted after the transform)
    data.augment = {"crop_padding": 4}
    data._train_transform = type(data._train_transform)(data._train_transform.transforms)
    assert data.dataset("forget", augment=True)[0][0][0, -1, -1] == pytest.approx(value)


def test_corruption_is_deterministic_and_named_by_its_settings():
    first, second = poisoned_digits(seed=3), poisoned_digits(seed=3)
    assert np.array_equal(first.corruption.indices, second.corruption.indices)
    assert np.array_equal(first.indices("forget"), second.indices("forget"))
    assert not np.array_equal(first.corruption.indices, poisoned_digits(seed=4).corruption.indices)
    key = task_corruption_key({"name": "poison", "poison": {"share": 0.05, "seed": 3}})
    assert first.corruption.key == key and key.startswith("poison-")
    assert key != task_corruption_key({"name": "poison", "poison": {"share": 0.02, "seed": 3}})
    assert task_corruption_key({"name": "fullclass", "forget": "3"}) is None
    # the code's draw includes target images (they keep their label); from_target=false draws every poison elsewhere
    c = first.corruption
    assert (c.true_labels[c.indices] == 0).any()
    other = poisoned_digits(seed=3, from_target=False).corruption
    assert len(other.indices) == len(c.indices) and (other.true_labels[other.indices] != 0).all()
    assert other.key != c.key


def test_mislabelled_samples_all_carry_a_wrong_label():
    data = UnlearningDataModule(build_digits, MislabelTask({"share": 0.1, "seed": 1}, identified=0.5), eval_batch_size=512)
    data.setup()
    c = data.corruption
    assert (c.labels[c.indices] != c.true_labels[c.indices]).all(), "ASSD's chained ifs could restore a label"
    assert np.array_equal(np.flatnonzero(c.labels != c.true_labels), c.indices)
    swap = UnlearningDataModule(build_digits, MislabelTask({"count": 20, "mode": "swap", "classes": ["3", "5"]},
                                                           identified_count=5), eval_batch_size=512)
    swap.setup()
    s = swap.corruption
    assert sorted(set(s.true_labels[s.indices])) == [3, 5] and (s.labels[s.indices] == 8 - s.true_labels[s.indices]).all()
    assert len(swap.indices("forget")) == 5


@pytest.mark.parametrize("task,words", [
    (lambda: PoisonTask({"share": 1.5}), ["task.poison.share", "strictly between 0 and 1"]),
    (lambda: PoisonTask({"share": 0.05}, identified_count=500), ["identified_count=500", "65 corrupted"]),
    (lambda: PoisonTask({"share": 0.05, "colour": 1}), ["unknown setting", "colour"]),
    (lambda: PoisonTask({"share": 0.05, "target": "eleven"}), ["eleven"]),
    (lambda: PoisonTask({"share": 0.05, "trigger_size": 8}), ["trigger_size=8", "whole"]),
    (lambda: PoisonTask({"share": 0.05}, identified=0.0), ["task.identified", "(0, 1]"]),
    (lambda: MislabelTask({"share": 0.05, "mode": "swap"}), ["classes=[A,B]"]),
    (lambda: MislabelTask({"share": 0.05, "mode": "shuffle"}), ["mode='shuffle'", "random, swap"]),
])
def test_impossible_corruptions_are_refused_clearly(task, words):
    with pytest.raises(UserError) as error:
        data = UnlearningDataModule(build_digits, task(), eval_batch_size=512)
        data.setup()
    for word in words:
        assert word in str(error.value)


def test_corruption_tasks_refuse_coarse_labels():
    with pytest.raises(UserError, match="fine"):
        UnlearningDataModule(build_digits, PoisonTask({"share": 0.05}), labels="coarse").setup()


# ----------------------------------------------------------------- Potion's PTN search
def backdoored_cnn(data: UnlearningDataModule, epochs: int = 12) -> nn.Module:
    """A small CNN trained on the poisoned digits until it has learnt (some of) the backdoor."""
    model = small_cnn(0)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(data.dataset("full"), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(epochs):
        for images, labels in loader:
            optimiser.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def backdoor():
    data = poisoned_digits(share=0.1, identified=0.5, trigger_size=2)
    return data, backdoored_cnn(data)


def reference_importances(model: nn.Module, loader: DataLoader, variant: str) -> dict[str, torch.Tensor]:
    """``ParameterPerturber.calc_importance`` of the reference code: per batch backward, accumulate, / batches."""
    model = copy.deepcopy(model).eval()
    acc = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in loader:
        model.zero_grad()
        out = model(x)
        if variant == "ssd":
            loss = F.cross_entropy(out, y)
        elif variant == "potion":  # x_D=True: torch.norm(out, p="fro", dim=1).abs().mean()
            loss = torch.norm(out, p="fro", dim=1).abs().mean()
        else:
            loss = torch.norm(out, p="fro", dim=1).pow(2).mean()
        loss.backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                acc[n] += p.grad.data.clone().pow(2) if variant == "ssd" else p.grad.data.clone().abs()
    return {n: v / len(loader) for n, v in acc.items()}


def reference_modify(model: nn.Module, original: dict, sample: dict, percentile_value: float) -> nn.Module:
    """``modify_weight(adaptive=True)``: alpha = np.nanpercentile of the finite ratios, lambda 1, bound 1."""
    ratios = np.concatenate([(sample[n] / original[n]).flatten().numpy() for n in original])
    ratios = ratios[~np.isnan(ratios)]
    ratios = ratios[~np.isinf(ratios)]
    alpha = float(np.nanpercentile(ratios, percentile_value))
    with torch.no_grad():
        for n, p in model.named_parameters():
            locations = torch.where(sample[n] > original[n] * alpha)
            update = (original[n] / sample[n])[locations]
            update[update > 1] = 1
            p[locations] = p[locations] * update
    return model


def reference_potion(model: nn.Module, retain: DataLoader, forget: DataLoader, variant: str, rho: float,
                     max_tries: int = 500) -> tuple[nn.Module, float, int]:
    """``XALFSSD.unlearn`` with ITERATIVE_SEARCH: s = |Df| / (|Df| + |Dr|) / 25, x1.1 until acc <= rho x before."""
    def acc(m):
        with torch.no_grad():
            return sum(int((m(x).argmax(1) == y).sum()) for x, y in forget) / len(forget.dataset)

    original_model, before = copy.deepcopy(model), acc(model)
    frac = len(forget.dataset) / (len(forget.dataset) + len(retain.dataset)) / 25
    original = reference_importances(model, retain, variant)
    sample = reference_importances(model, forget, variant)
    for tries in range(1, max_tries + 1):  # noqa: B007 (the count of tries is the result)
        model = reference_modify(copy.deepcopy(original_model), original, sample, 100 - math.log(1 + frac * 100))
        if acc(model) <= rho * before:
            break
        frac *= 1.1
    return model, frac, tries


@pytest.mark.parametrize("variant", ["potion", "ssd"])
def test_potion_matches_its_reference_code(backdoor, variant):
    data, trained = backdoor
    loaders = [DataLoader(data.dataset(split), batch_size=64) for split in ("retain", "forget")]
    expected, share, tries = reference_potion(trained, *loaders, variant, rho=0.1)
    assert tries > 1, "the case must exercise the search, not stop at its first try"
    model = copy.deepcopy(trained)
    info = SSD(PTNSearch(rho=0.1, max_validation_drop=None), variant=variant, cache=False).unlearn(
        model, data, context(model, None))  # the code's search has no guard
    assert info["policy"] == "ptn" and info["reached"] and info["tries"] == tries
    assert info["share"] == pytest.approx(share) and info["forget_acc_before"] > 50
    assert info["forget_acc_after"] <= 0.1 * info["forget_acc_before"] + 1e-9
    for (name, ours), (_, theirs) in zip(model.named_parameters(), expected.named_parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7, msg=name)


def test_potion_heals_the_backdoor_it_searched_against(backdoor):
    data, trained = backdoor
    model = copy.deepcopy(trained)
    SSD(PTNSearch(), variant="potion", cache=False).unlearn(model, data, context(model, None))

    def figures(m):
        train_logits = torch.cat([m(x).detach() for x, _ in DataLoader(data.dataset("full"), batch_size=512)])
        triggered = torch.cat([m(x).detach() for x, _ in DataLoader(data.dataset("triggered_test"), batch_size=512)])
        return corruption_metrics(train_logits, triggered, data)

    before, after = figures(trained), figures(model)
    assert before["attack_success"] > 30, "the small CNN must have learnt the backdoor for this test to mean anything"
    assert after["poison_identified_acc"] < before["poison_identified_acc"]
    assert after["attack_success"] < before["attack_success"], "unidentified trigger uses are healed too"


def test_potion_guard_stops_before_the_search_damages_the_model(backdoor):
    """Unguarded, the search widens until every identified poison flips and costs the small CNN about a third
    of its validation accuracy; the guard stops at the last try within 3 points and says so (issue 31)."""
    data, trained = backdoor
    validation = data.dataset("val")
    before = dataset_accuracy(trained, validation, 256)
    unguarded, guarded = copy.deepcopy(trained), copy.deepcopy(trained)
    free = SSD(PTNSearch(rho=0.1, max_validation_drop=None), variant="potion", cache=False).unlearn(
        unguarded, data, context(unguarded, None))
    assert free["reached"] and before - dataset_accuracy(unguarded, validation, 256) > 0.10, \
        "the unguarded search must damage this model for the guard to have something to stop"
    info = SSD(PTNSearch(rho=0.1), variant="potion", cache=False).unlearn(guarded, data, context(guarded, None))
    guard = info["validation_guard"]
    assert guard["max_drop"] == 0.03 and guard["stopped_search"] and not info["reached"]
    assert guard["n_val"] == len(validation) == len(data.indices("val"))
    assert guard["val_acc_before"] == pytest.approx(100 * before)
    assert guard["val_acc_after"] == pytest.approx(100 * dataset_accuracy(guarded, validation, 256))
    assert guard["val_acc_after"] >= guard["val_acc_before"] - 3.0
    assert 1 < info["tries"] < free["tries"]
    # the kept model is the try before the one the guard refused: its share, and Df partly forgotten
    first = len(data.indices("forget")) / (len(data.indices("forget")) + len(data.indices("retain"))) / 25
    assert info["share"] == pytest.approx(first * 1.1 ** (info["tries"] - 2))
    assert 0 < info["parameters_changed"] < free["parameters_changed"]
    assert info["forget_acc_after"] < info["forget_acc_before"] - 20


@pytest.mark.parametrize("overrides,words", [
    (["method.policy.rho=1.5"], ["method=potion", "rho must lie in [0, 1)"]),
    (["method.policy.max_validation_drop=2"], ["max_validation_drop must lie in [0, 1)", "got 2.0"]),
    (["method.policy.step=0.9"], ["step must be > 1"]),
    (["+method.policy.tries=3"], ["tries"]),
    (["method.policy.max_tries=2.5"], ["max_tries must be a whole number"]),
    (["method.alpha=10.0"], ["PTNSearch", "chooses alpha itself", "method.alpha=10.0"]),
])
def test_bad_potion_settings_are_refused(overrides, words):
    with pytest.raises(UserError) as error:
        build_method(compose_config("unlearn", ["method=potion", "task=poison", *overrides]))
    for word in words:
        assert word in str(error.value)


# ----------------------------------------------------------------- end to end through the CLI
@pytest.mark.e2e
def test_poison_run_end_to_end_trains_its_own_model_and_refuses_another(tmp_path, digits_checkpoint):
    """README's first Potion command, `unlearn.py task=poison method=potion`: it trains the poisoned model
    (its own registry name) with the default recipe and poison, heals it, records the figures.

    Measured at these defaults (5 % of D, 2 px trigger, 8 epochs, half of the 65 poisons identified) on
    training seeds 0, 1, 2 (results/digits-poison): attack success 99.4 / 100.0 / 99.7 % before and 23.1 /
    5.9 / 0.6 % after, healed 68.1 / 80.8 / 81.9 %, test accuracy 97.78 / 98.06 / 97.78 -> 94.72 / 98.06 /
    96.67 %; the validation guard stopped the search on seeds 0 and 1 before rho was reached (identified
    poisons still answered as the target: 21.2 / 12.1 %; seed 2 reached rho at 9.1 %). Unguarded, the
    same requests end at attack success 10.2 / 2.2 / 0.6 % and test 93.61 / 98.06 / 96.67 %. (With 2
    training epochs the backdoor is seed-dependent, so the full recipe is run.)
    """
    import json
    from pathlib import Path

    from tests.conftest import QUIET, run_cli

    fast = [*QUIET, "evaluation.strong_mia=false", "evaluation.probe=false"]
    poison = ["task=poison"]
    run = run_cli("unlearn.py", *fast, *poison, "method=potion", f"hydra.run.dir={tmp_path / 'run'}", root=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "healed" in run.stdout and "attack success" in run.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "poison" and results["method"] == "potion"
    source = Path(results["source_checkpoint"])
    assert re.match(r"digits-fine-resnet18-8px-seed0-r[0-9a-f]{8}-poison-", source.name), "the corruption names the model"
    metadata = json.loads((source / "metadata.json").read_text())
    assert metadata["corruption"]["kind"] == "poison" and metadata["corruption"]["n_corrupted"] == round(0.05 * metadata["n_train"])
    info = results["method_info"]
    assert info["policy"] == "ptn" and info["tries"] >= 1 and info["share"] > 0 and "alpha" in info
    for stage in ("original", "unlearned"):
        assert {"healed_acc", "attack_success", "poison_acc", "poison_identified_acc"} <= set(results["metrics"][stage])
    before, after = results["metrics"]["original"], results["metrics"]["unlearned"]
    assert before["attack_success"] >= 90.0, "the default poison must implant a backdoor for Potion to heal"
    assert after["attack_success"] <= 40.0 and after["healed_acc"] >= 55.0, after
    guard = info["validation_guard"]
    if info["reached"]:
        assert after["poison_identified_acc"] <= 0.1 * before["poison_identified_acc"] + 1e-9, "PTN's stop rule (rho 0.1)"
    else:  # the guard stopped the widening: the model is kept within 3 points of validation accuracy
        assert guard["stopped_search"], info
    assert guard["val_acc_after"] >= guard["val_acc_before"] - 3.0, guard
    assert after["test_acc"] >= before["test_acc"] - 5.0, (before["test_acc"], after["test_acc"])
    # the report's Potion-shaped table: the poisoned model before, then Potion, with healed % and the accuracy drop
    from unlearning.report.write import write_report

    report = write_report([tmp_path / "run"], tmp_path / "report")
    table = next(iter(report.tables.values()))
    assert "healed %" in table and "acc drop" in table and "attack success %" in table
    assert "| original" in table and "| potion" in table
    assert f"{results['metrics']['unlearned']['healed_acc']:.2f}" in table
    # the clean model is refused for a poison task, and the poisoned one for a clean task
    for name, task, checkpoint in (("poison", poison, digits_checkpoint), ("clean", ["task=fullclass"], source)):
        refused = run_cli("unlearn.py", *fast, *task, f"checkpoint={checkpoint}", "method=baseline",
                          f"hydra.run.dir={tmp_path / name}", root=tmp_path)
        assert refused.returncode != 0 and "corruption_key" in refused.stderr, refused.stderr[-2000:]


def test_the_default_poison_is_the_one_that_backdoors_digits():
    """`task=poison` on digits poisons 5 % with a 2 px trigger (the paper's 1 % / 1 px implants nothing there);
    other datasets keep the paper's 1 % and its 3 px trigger scaled to the image (null)."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    for job in ("train", "unlearn"):
        digits = OmegaConf.to_container(compose_config(job, ["task=poison"]).task.poison, resolve=True)
        cifar = OmegaConf.to_container(compose_config(job, ["task=poison", "dataset=cifar10"]).task.poison, resolve=True)
        assert (digits["share"], digits["trigger_size"]) == (0.05, 2)
        assert (cifar["share"], cifar["trigger_size"]) == (0.01, None)
    given = compose_config("unlearn", ["task=poison", "task.poison.share=0.02", "task.poison.trigger_size=1"])
    assert (given.task.poison.share, given.task.poison.trigger_size) == (0.02, 1)


def test_train_py_with_a_poison_task_names_the_poisoned_model():
    from tests.conftest import compose_config
    from unlearning.jobs.builders import published_model_path as registry_path

    poisoned = registry_path(compose_config("train", ["task=poison", "task.poison.share=0.02"]), "fine", 8)
    clean = registry_path(compose_config("train", []), "fine", 8)
    other = registry_path(compose_config("unlearn", ["task=poison", "task.identified=0.9"]), "fine", 8)
    assert re.fullmatch(r"digits-fine-resnet18-8px-seed0-r[0-9a-f]{8}", clean.name)
    assert poisoned.name.startswith(clean.name + "-poison-") and poisoned != other
    same = registry_path(compose_config("unlearn", ["task=poison", "task.poison.share=0.02", "task.identified=0.9"]),
                         "fine", 8)
    assert same == poisoned, "what was identified does not change the trained model"


def test_poisoned_cifar_in_its_real_file_format(cifar_root):
    """The same view over torchvision's CIFAR-10 files: the paper's 3 px trigger at 32 px, at the largest normalised value."""
    from tests.test_data import datamodule

    data = datamodule(["dataset=cifar10", "task=poison", "task.poison.count=6", "task.identified_count=2",
                      f"paths.data_dir={cifar_root}"])
    c = data.corruption
    assert c.trigger.size == 3 and len(c.indices) == 6 and len(data.indices("forget")) == 2
    assert c.trigger.value == pytest.approx(max((1 - m) / s for m, s in zip(data.bundle.mean, data.bundle.std, strict=True)))
    image, label = data.dataset("full")[int(c.indices[0])]
    assert label == 0 and torch.all(image[:, -3:, -3:] == c.trigger.value) and image.shape == (3, 32, 32)
    assert not torch.all(image[:, -4, -4] == c.trigger.value), "only the 3x3 corner"


# ----------------------------------------------------------------- every method on both tasks (slow)
@pytest.fixture(scope="module")
def corrupted_root(tmp_path_factory):
    """A root where the first run trains the poisoned and the mislabelled digits models (3 epochs each)."""
    return tmp_path_factory.mktemp("corrupted")


CORRUPTION_OVERRIDES = {
    "poison": ["task.poison.share=0.1", "task.poison.trigger_size=2", "task.identified=0.5"],
    "mislabel": ["task.mislabel.share=0.1", "task.identified=0.5"],
}


# Mislabel end to end through the pipeline runs in CI (e2e) with Potion, the method made for it; the rest is slow.
@pytest.mark.parametrize("task,method", [
    pytest.param(task, method, marks=pytest.mark.e2e if (task, method) == ("mislabel", "potion") else pytest.mark.slow)
    for task in ("poison", "mislabel")
    for method in ("baseline", "retrain", "finetune", "badteacher", "amnesiac", "scrub", "salun", "jit",
                   "ssd", "lfssd", "assd", "potion", "auto")])
def test_every_method_runs_poison_and_mislabel(corrupted_root, tmp_path, method, task):
    """Every method runs on both tasks through the real pipeline and records the task's figures (UNSIR refuses)."""
    from omegaconf import open_dict

    from tests.conftest import QUIET, compose_config
    from tests.test_methods import SHORT
    from unlearning.evaluation.corruption import MISLABEL_NAMES, POISON_NAMES
    from unlearning.jobs.unlearn import unlearn

    name, extra = ("ssd", ["method.alpha=auto"]) if method == "auto" else (method, [])
    cfg = compose_config("unlearn", [f"paths.root_dir={corrupted_root}", f"method={name}", f"task={task}", *QUIET,
                                     "dataset.training.epochs=3", "evaluation.strong_mia=false",
                                     "evaluation.probe=false", *CORRUPTION_OVERRIDES[task], *SHORT.get(method, []),
                                     *extra])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    results = unlearn(cfg, tmp_path)
    names = POISON_NAMES if task == "poison" else MISLABEL_NAMES
    for stage in ("original", "unlearned"):
        assert set(names) <= set(results["metrics"][stage])
    after = results["metrics"]["unlearned"]
    assert math.isfinite(after["test_acc"]) and math.isfinite(after[names[0]])
    if (task, method) == ("mislabel", "potion"):
        # The digits model does not memorise 10 % wrong labels (measured: 1.5 % of the identified ones answered
        # with their wrong label before, at 3 and at 8 epochs; at 8 the search could not flip that one sample
        # within the guard and stopped): whatever PTN does, the guard keeps validation within 3 points.
        before, info = results["metrics"]["original"], results["method_info"]
        assert before["error_identified_acc"] < 10 and before["error_true_acc"] > 80, before
        guard = info["validation_guard"]
        assert info["tries"] >= 1 and (info["reached"] or guard["stopped_search"]), info
        assert guard["val_acc_after"] >= guard["val_acc_before"] - 3.0, guard
        assert after["error_identified_acc"] <= before["error_identified_acc"] or guard["stopped_search"], (before, after)
