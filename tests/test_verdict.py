"""The clean / not forgotten / damaged / collapsed rule that the tables and the demo share."""

from __future__ import annotations

import math

import pytest

from unlearning.evaluation.verdict import COLLAPSE_DROP, FORGET_MAX, RETAIN_DROP_MAX, is_clean, verdict

BEFORE = {"retain_test_acc": 97.0, "forget_test_acc": 98.0}


@pytest.mark.parametrize("forget,retain,expected", [
    (0.0, 97.0, "clean"),
    (FORGET_MAX, 97.0 - RETAIN_DROP_MAX, "clean"),             # both limits are inclusive
    (FORGET_MAX + 0.1, 97.0, "not forgotten"),
    (98.0, 98.5, "not forgotten"),                              # a gain on Dr is no damage
    (0.0, 97.0 - RETAIN_DROP_MAX - 0.1, "damaged"),
    (0.0, 97.0 - COLLAPSE_DROP - 0.1, "collapsed"),
    (90.0, 11.1, "collapsed"),                                  # collapse wins over "not forgotten"
])
def test_verdict(forget, retain, expected):
    after = {"retain_test_acc": retain, "forget_test_acc": forget}
    assert verdict(BEFORE, after) == expected
    assert is_clean(BEFORE, after) == (expected == "clean")


def test_random_forgetting_has_no_verdict():
    after = {"retain_test_acc": 96.0, "forget_test_acc": math.nan}
    assert verdict(BEFORE, after) is None and is_clean(BEFORE, after) is None
