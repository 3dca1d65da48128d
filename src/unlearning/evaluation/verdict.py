"""A one-word verdict on a class-forgetting request, from the accuracies before and after.

The rule the README's tables and `make demo` use, kept in one place so that a table, a
count of clean requests and the demo's sentence cannot disagree. It reads test accuracies
only, so it is a report on a finished run, never something a method may optimise.

- ``clean``: Df-test accuracy at most :data:`FORGET_MAX` % and Dr-test accuracy down by at
  most :data:`RETAIN_DROP_MAX` points (the forgotten class is gone, the rest kept);
- ``collapsed``: Dr-test accuracy down by more than :data:`COLLAPSE_DROP` points (the
  method destroyed the model, whatever it did to Df);
- ``damaged``: Df forgotten but Dr-test down by more than the clean margin;
- ``not forgotten``: Df-test accuracy above :data:`FORGET_MAX` % and Dr-test kept.

Random-sample forgetting has no Df-test set; it gets no verdict (``None``): compare its
Df-train accuracy with the test accuracy instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Df-test accuracy (%) at or below which the class counts as forgotten.
FORGET_MAX = 5.0
#: Dr-test accuracy points a clean request may lose.
RETAIN_DROP_MAX = 3.0
#: Dr-test accuracy points lost beyond which the model counts as collapsed.
COLLAPSE_DROP = 20.0

VERDICTS = ("clean", "not forgotten", "damaged", "collapsed")


def verdict(before: Mapping[str, float], after: Mapping[str, float]) -> str | None:
    """``clean``, ``not forgotten``, ``damaged`` or ``collapsed``; None without a Df-test set."""
    forget = after.get("forget_test_acc")
    if forget is None or (isinstance(forget, float) and math.isnan(forget)):
        return None
    drop = float(before["retain_test_acc"]) - float(after["retain_test_acc"])
    if drop > COLLAPSE_DROP:
        return "collapsed"
    if forget > FORGET_MAX:
        return "not forgotten"
    return "clean" if drop <= RETAIN_DROP_MAX else "damaged"


def is_clean(before: Mapping[str, float], after: Mapping[str, float]) -> bool | None:
    """True for a clean request, False otherwise, None without a Df-test set."""
    outcome = verdict(before, after)
    return None if outcome is None else outcome == "clean"
