"""The verdicts that the tables and the demo share: the fixed full-class rule and the one against retraining."""

from __future__ import annotations

import math

import pytest

from unlearning.evaluation.verdict import (
    COLLAPSE_DROP,
    FORGET_MAX,
    FORGET_TOLERANCE,
    RETAIN_DROP_MAX,
    is_clean,
    judge,
    reference_verdict,
    verdict,
)

BEFORE = {"retain_test_acc": 97.0, "forget_test_acc": 98.0}


@pytest.mark.parametrize("forget,retain,expected", [
    (0.0, 97.0, "clean"),
    (FORGET_MAX, 97.0 - RETAIN_DROP_MAX, "clean"),             # both limits are inclusive
    (FORGET_MAX + 0.1, 97.0, "not forgotten"),
    (98.0, 98.5, "not forgotten"),                              # a gain on Dr is no damage
    (0.0, 97.0 - RETAIN_DROP_MAX - 0.1, "damaged"),
    (0.0, 97.0 - COLLAPSE_DROP - 0.1, "collapsed"),
    (90.0, 11.1, "collapsed"),                                  # collapse wins over "not forgotten"
    (98.0, 82.0, "damaged"),              # kept the class and lost 15 points of Dr: the damage is named
    (FORGET_MAX + 0.1, 97.0 - RETAIN_DROP_MAX - 0.1, "damaged"),
])
def test_verdict(forget, retain, expected):
    after = {"retain_test_acc": retain, "forget_test_acc": forget}
    assert verdict(BEFORE, after) == expected
    assert is_clean(BEFORE, after) == (expected == "clean")


def test_random_forgetting_has_no_verdict():
    after = {"retain_test_acc": 96.0, "forget_test_acc": math.nan}
    assert verdict(BEFORE, after) is None and is_clean(BEFORE, after) is None


REFERENCE = {"retain_test_acc": 86.0, "forget_train_acc": 86.3}  # random forgetting: no Df-test


@pytest.mark.parametrize("forget_train,retain,expected", [
    (86.3, 86.0, "matches retraining"),
    (86.3 + FORGET_TOLERANCE, 86.0 - RETAIN_DROP_MAX, "matches retraining"),    # both limits inclusive
    (99.2, 86.8, "under-forgot"),            # the untouched original of the benchmark: memorised Df
    (70.0, 86.0, "over-forgot"),             # pushed Df below unseen-data accuracy
    (99.2, 86.0 - RETAIN_DROP_MAX - 0.1, "damaged"),  # damage is named before the Df gap
    (0.0, 86.0 - COLLAPSE_DROP - 0.1, "collapsed"),
])
def test_reference_verdict_for_random_samples(forget_train, retain, expected):
    after = {"retain_test_acc": retain, "forget_train_acc": forget_train, "forget_test_acc": math.nan}
    assert reference_verdict(after, REFERENCE) == expected
    assert judge({"retain_test_acc": 86.8}, after, REFERENCE) == expected  # the fixed rule would say nothing


def test_reference_verdict_for_a_sub_class_does_not_call_the_siblings_label_damage():
    """Retrained without a sub-class, the model still puts 60 % of its images in the shared coarse class."""
    reference = {"retain_test_acc": 95.0, "forget_train_acc": 62.0, "forget_test_acc": 60.0}
    assert reference_verdict({"retain_test_acc": 94.0, "forget_train_acc": 58.0, "forget_test_acc": 61.0},
                             reference) == "matches retraining"
    assert verdict({"retain_test_acc": 96.0}, {"retain_test_acc": 94.0, "forget_test_acc": 61.0}) == "not forgotten"
    # Df-test matching is not enough: Df-train must match too
    assert reference_verdict({"retain_test_acc": 94.0, "forget_train_acc": 99.0, "forget_test_acc": 61.0},
                             reference) == "under-forgot"
    assert reference_verdict({"retain_test_acc": 94.0, "forget_train_acc": 0.0, "forget_test_acc": 0.0},
                             reference) == "over-forgot"


def test_full_class_against_a_reference_at_zero_is_the_fixed_rule_with_the_reference_for_dr():
    reference = {"retain_test_acc": 96.0, "forget_train_acc": 0.0, "forget_test_acc": 0.0}
    for forget, retain in [(0.0, 95.0), (FORGET_MAX + 0.1, 96.0), (0.0, 90.0), (0.0, 50.0)]:
        after = {"retain_test_acc": retain, "forget_train_acc": forget, "forget_test_acc": forget}
        fixed = verdict({"retain_test_acc": 96.0}, after)
        assert reference_verdict(after, reference) == {"clean": "matches retraining",
                                                      "not forgotten": "under-forgot"}.get(fixed, fixed)


def test_without_the_reference_figures_the_fixed_rule_answers():
    after = {"retain_test_acc": 97.0, "forget_test_acc": 0.0}
    assert reference_verdict(after, {}) is None
    assert judge(BEFORE, after, None) == judge(BEFORE, after, {"retain_test_acc": 96.0}) == "clean"
