"""The sub-class target of the hands-free search: a nearest-neighbour vote among retained images
(unlearning.methods.ssd.neighbours) estimates what a model retrained without the sub-class still
recognises, from training data only."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tests.conftest import QUIET, compose_config
from tests.test_fashion_mnist import needs_files
from unlearning.jobs.builders import build_datamodule, build_model, build_task
from unlearning.methods.ssd import importances
from unlearning.methods.ssd.neighbours import neighbour_vote
from unlearning.methods.ssd.policies import DampeningRequest, SearchedAlpha
from unlearning.methods.ssd.search import (
    AutoSearch,
    AutoSettings,
    Probe,
    Trial,
    predicted_classes,
    sample_items,
)
from unlearning.models.checkpoints import load_checkpoint, load_into


def _subclass_data(forget: str, *overrides: str):
    cfg = compose_config("unlearn", ["task=subclass", f"task.forget={forget}", *overrides, *QUIET])
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    return cfg, data


def _split(data, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return sample_items(data.dataset(split), len(data.dataset(split)), 0)


def test_the_vote_gives_the_share_whose_neighbours_share_the_class():
    """Known answers on synthetic points: images next to retained images of their own class count,
    images next to another class do not, and the share is exactly the fraction that do."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0] * 16, [10.0] * 16])
    retain = torch.cat([centres[c] + 0.1 * torch.randn(40, 16, generator=generator) for c in (0, 1)])
    classes = torch.tensor([0] * 40 + [1] * 40)
    near_own = centres[0] + 0.1 * torch.randn(6, 16, generator=generator)     # class 0, beside class 0
    near_other = centres[1] + 0.1 * torch.randn(4, 16, generator=generator)   # class 0, beside class 1
    forget = torch.cat([near_own, near_other]).reshape(10, 1, 4, 4)
    vote = neighbour_vote(retain.reshape(80, 1, 4, 4), classes, forget, torch.zeros(10, dtype=torch.long),
                          neighbours=5, components=50)
    assert vote.share == pytest.approx(0.6)
    assert (vote.forget_images, vote.retain_images, vote.neighbours) == (10, 80, 5)
    assert vote.components == 16  # never more axes than pixels
    with pytest.raises(ValueError, match="at least 5 retained images"):
        neighbour_vote(retain[:4].reshape(4, 1, 4, 4), classes[:4], forget, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one Df image"):
        neighbour_vote(retain.reshape(80, 1, 4, 4), classes, forget[:0], torch.zeros(0, dtype=torch.long))


def test_on_real_digits_the_vote_says_a_paired_digit_is_not_carried_by_its_sibling():
    """Coarse digits (pairs): a model retrained without digit 3 calls almost none of the threes
    two_three (docs/results.md); the vote among the retained images says the same, while the same
    threes put back among the retained images are all voted into their class (the vote can say 1)."""
    _, data = _subclass_data("3")
    retain, retain_labels = _split(data, "retain")
    forget, forget_labels = _split(data, "forget")
    assert neighbour_vote(retain, retain_labels, forget, forget_labels).share < 0.25
    seen = neighbour_vote(torch.cat([retain, forget]), torch.cat([retain_labels, forget_labels]), forget,
                          forget_labels)
    assert seen.share > 0.95


@needs_files
def test_on_fashion_mnist_the_vote_separates_a_carried_garment_from_a_lost_one(tmp_path):
    """Fashion-MNIST's departments: a model retrained without Sneaker still calls every sneaker
    footwear, one retrained without Dress keeps about a third of the dresses (README's sub-class
    table); the vote among the retained training images is high for the first and low for the second."""
    shares = {}
    for garment in ("Sneaker", "Dress"):
        _, data = _subclass_data(garment, "dataset=fashion_mnist", f"paths.data_dir={tmp_path}")
        retain, retain_labels = _split(data, "retain")
        forget, forget_labels = _split(data, "forget")
        shares[garment] = neighbour_vote(retain, retain_labels, forget, forget_labels).share
    assert shares["Sneaker"] > 0.95 and shares["Dress"] < 0.6, shares


@pytest.mark.parametrize("variant", ["ssd", "lfssd"])
def test_a_sub_class_request_aims_at_the_vote_with_labels_or_predictions(trained_root, coarse_checkpoint, variant):
    """method.alpha=auto on task=subclass: the target is the vote's share on the Df probe (never below
    forget_target), SSD voting with labels and LFSSD with the original's predictions (it reads no
    labels); the search then stops at the largest alpha that reaches it; target_from_validation
    naming subclass takes precedence, and target_from_neighbours=[] gives the fixed target."""
    cfg, data = _subclass_data("3", f"paths.root_dir={trained_root}", "method.alpha=auto")
    state, _ = load_checkpoint(coarse_checkpoint)
    model = load_into(build_model(cfg, data.num_classes, data.channels), state, "coarse digits").eval()
    request = DampeningRequest.from_datamodule(data, variant)
    full = importances(model, data.loader("full"))
    forget = importances(model, data.loader("forget"))
    settings = AutoSettings(max_steps=1, scopes=(1.0,), max_cost=50.0)

    info = SearchedAlpha(settings).dampen(copy.deepcopy(model), full, forget, request)
    target = info["target"]
    assert target["kind"] == "neighbour vote"
    assert target["classes"] == ("label" if variant == "ssd" else "predicted class")
    images, labels = sample_items(data.dataset("retain"), settings.neighbour_samples, settings.seed + 2)
    probe, probe_labels = sample_items(data.dataset("forget"), settings.forget_samples, settings.seed)
    if variant == "lfssd":
        labels, probe_labels = (predicted_classes(model, images, 64), predicted_classes(model, probe, 64))
    expected = neighbour_vote(images, labels, probe, probe_labels).share
    assert target["share"] == pytest.approx(expected)
    assert target["forget_target"] == pytest.approx(max(expected, settings.forget_target))
    assert info["settings"]["forget_target"] == pytest.approx(target["forget_target"])
    reached = [t for t in info["trials"] if t["forget_kept"] <= target["forget_target"] and t["retain_changed"] <= 0.02]
    assert info["target_reached"] is bool(reached)
    if reached:
        assert info["chosen_alpha"] == max(t["alpha"] for t in reached)

    # digits hold fewer validation images of a digit than min_validation_images: Df-train alone is weighed
    assert len(data.dataset("forget_val")) < settings.min_validation_images
    assert info["probe"]["unseen_samples"] == 0 and all(t["unseen_kept"] is None for t in info["trials"])
    weighed = SearchedAlpha(AutoSettings(max_steps=1, scopes=(1.0,), max_cost=50.0, min_validation_images=1))
    weighed_info = weighed.dampen(copy.deepcopy(model), full, forget, request)
    assert weighed_info["probe"]["unseen_samples"] == len(data.dataset("forget_val"))
    for trial in weighed_info["trials"]:
        assert trial["forget_kept"] == pytest.approx(0.5 * trial["train_kept"] + 0.5 * trial["unseen_kept"])

    fixed = SearchedAlpha(AutoSettings(max_steps=1, scopes=(1.0,), max_cost=50.0, target_from_neighbours=()))
    assert fixed.dampen(copy.deepcopy(model), full, forget, request)["target"] == {"kind": "fixed",
                                                                                  "forget_target": 0.02}
    by_validation = SearchedAlpha(AutoSettings(max_steps=1, scopes=(1.0,), max_cost=50.0, min_validation_images=1,
                                               target_from_validation=("random", "subclass")))
    assert by_validation.dampen(copy.deepcopy(model), full, forget, request)["target"]["kind"] == "validation accuracy"


def test_the_probe_weighs_unseen_images_beside_the_df_probe():
    """With unseen images, forget_kept is the weighted mean of the share of the Df probe that keeps the
    original's prediction and the share of the unseen images put in the class the original gives most of
    the Df probe (what calibrate recorded)."""
    torch.manual_seed(0)
    original = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    changed = copy.deepcopy(original)
    with torch.no_grad():
        changed[1].bias += torch.tensor([0.0, 0.3, -0.3])
    forget, retain, unseen = (torch.randn(n, 1, 4, 4) for n in (40, 30, 20))
    probe = Probe(forget, retain, 8, unseen_images=unseen, unseen_weight=0.25)
    probe.calibrate(original)
    assert probe.size == 90
    measured = probe.measure(changed)

    def kept(images):
        return float((original(images).argmax(1) == changed(images).argmax(1)).float().mean())

    df_class = int(torch.mode(original(forget).argmax(1)).values)
    in_class = float((changed(unseen).argmax(1) == df_class).float().mean())
    assert probe.unseen_class == df_class
    assert (measured["train_kept"], measured["unseen_kept"]) == (pytest.approx(kept(forget)), pytest.approx(in_class))
    assert measured["forget_kept"] == pytest.approx(0.75 * kept(forget) + 0.25 * in_class)
    assert 0 < in_class < 1 and kept(forget) < 1  # neither share is trivially 0 or 1: the check can fail
    plain = Probe(forget, retain, 8)
    plain.calibrate(original)
    assert plain.measure(changed) == {"forget_kept": pytest.approx(kept(forget)),
                                      "retain_changed": pytest.approx(1 - kept(retain))}


def test_bad_neighbour_settings_fail_when_the_policy_is_built():
    for setting, value in [("neighbours", 0), ("neighbour_components", 0), ("neighbour_samples", 2),
                           ("unseen_weight", 1.5),
                           ("target_from_neighbours", ["random"])]:
        with pytest.raises(ValueError, match=f"setting {setting}="):
            SearchedAlpha(**{setting: value})


class StaircaseSearch(AutoSearch):
    """The search's own bisection and choice over a known response: Df kept as a step function of alpha
    (what Fashion-MNIST's ankle boot did: one alpha step flips a quarter of Df), the guard never broken."""

    def __init__(self, settings: AutoSettings, aim: bool, steps: dict[float, float]):
        super().__init__(settings, aim=aim)
        self.steps = steps

    def _trial(self, model, base, reference, forget, probe, scope, alpha, step):
        kept = next(value for edge, value in sorted(self.steps.items()) if alpha < edge)
        trial = Trial(scope, alpha, 0.1 * alpha, forget_kept=kept, retain_changed=0.0, parameters_changed=1, step=step)
        self.trials.append(trial)
        return trial


@pytest.mark.parametrize(("target", "aim", "expected_kept"), [
    (0.99, False, 0.75),   # a ceiling: the largest alpha at or below 0.99 is on the low stair
    (0.99, True, 1.0),     # aimed: the stair nearest 0.99 (1.0, within aim_tolerance) wins
    (0.78, True, 0.75),    # aimed at 0.78: 0.75 is nearest and within 5 points
    (0.50, True, None),    # nothing within 5 points of 0.50: no choice in this scope
])
def test_aiming_at_an_estimate_takes_the_nearest_safe_trial_not_the_first_under_it(target, aim, expected_kept):
    settings = AutoSettings(forget_target=target, alpha_min=0.1, alpha_max=1000.0, max_trials=30, aim_tolerance=0.05)
    search = StaircaseSearch(settings, aim, {5.0: 0.75, math.inf: 1.0})
    chosen = search._search_scope(None, None, None, None, None, 1.0, 0)
    assert (chosen.forget_kept if chosen else None) == expected_kept
    if aim and chosen is None:  # the step's fallback is the nearest safe trial that forgot anything
        assert search._best_effort(0, 1.0).forget_kept == 0.75
