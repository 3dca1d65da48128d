"""A one-word verdict on a class-forgetting request, from the accuracies before and after.

The rule the README's tables and `make demo` use, kept in one place so that a table, a
count of clean requests and the demo's sentence cannot disagree. It reads test accuracies
only, so it is a report on a finished run, never something a method may optimise.

- ``clean``: Df-test accuracy at most :data:`FORGET_MAX` % and Dr-test accuracy down by at
  most :data:`RETAIN_DROP_MAX` points (the forgotten class is gone, the rest kept);
- ``collapsed``: Dr-test accuracy down by more than :data:`COLLAPSE_DROP` points (the
  method destroyed the model, whatever it did to Df);
- ``damaged``: Dr-test down by more than the clean margin, whether or not Df was forgotten
  (damage is named before the Df outcome, as against the reference below: a run that keeps
  the class *and* loses 15 points of Dr-test must not read as merely "not forgotten");
- ``not forgotten``: Df-test accuracy above :data:`FORGET_MAX` % and Dr-test kept.

Random-sample forgetting has no Df-test set; it gets no verdict (``None``): compare its
Df-train accuracy with the test accuracy instead.

**Against the retrained reference** (:func:`reference_verdict`, used whenever a run has one:
``evaluation.reference=retrain``). "Df-test <= 5 %" is the right target only for a whole class:
a model retrained without a sub-class still recognises many of its images through their
siblings, and one retrained without random samples classifies them about as well as unseen
data. So the target is the reference's own accuracies, on every task:

- ``collapsed``: Dr-test more than :data:`COLLAPSE_DROP` points below the reference's;
- ``damaged``: Dr-test more than :data:`RETAIN_DROP_MAX` points below the reference's;
- ``under-forgot``: an accuracy on Df (Df-train always, Df-test where the task has one) more
  than :data:`FORGET_TOLERANCE` points above the reference's;
- ``over-forgot``: an accuracy on Df more than :data:`FORGET_TOLERANCE` points below it (the
  method erased what retraining would still know, e.g. a sibling-shared label, or unseen-like
  samples pushed to wrong classes: itself a signal that Df was forgotten);
- ``matches retraining``: otherwise.

The tolerances are the fixed rule's (5 points on Df, 3 on Dr-test), so that a full-class request
whose reference reads 0 % on Df is judged exactly as before, except that Dr-test is compared with
the retrained model rather than with the original. They are wide against the spread between
retrained models of different training seeds on the benchmark (docs/evaluation.md: Df-train
std 0.21 points, Dr-test 0.37 over seeds 0-2 on Fashion-MNIST random forgetting) and about one or
two test images of a digit (36 images, 2.8 points each).
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

#: Accuracy points on Df by which a run may differ from the retrained reference and still match it.
FORGET_TOLERANCE = FORGET_MAX

VERDICTS = ("clean", "not forgotten", "damaged", "collapsed")
REFERENCE_VERDICTS = ("matches retraining", "under-forgot", "over-forgot", "damaged", "collapsed")
#: The outcome that a table counts as success, per rule.
SUCCESS = ("clean", "matches retraining")


def verdict(before: Mapping[str, float], after: Mapping[str, float]) -> str | None:
    """``clean``, ``not forgotten``, ``damaged`` or ``collapsed``; None without a Df-test set."""
    forget = after.get("forget_test_acc")
    if forget is None or (isinstance(forget, float) and math.isnan(forget)):
        return None
    drop = float(before["retain_test_acc"]) - float(after["retain_test_acc"])
    if drop > COLLAPSE_DROP:
        return "collapsed"
    if drop > RETAIN_DROP_MAX:
        return "damaged"
    return "not forgotten" if forget > FORGET_MAX else "clean"


def is_clean(before: Mapping[str, float], after: Mapping[str, float]) -> bool | None:
    """True for a clean request, False otherwise, None without a Df-test set."""
    outcome = verdict(before, after)
    return None if outcome is None else outcome == "clean"


def _number(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def reference_verdict(after: Mapping[str, float], reference: Mapping[str, float],
                      forget_tolerance: float = FORGET_TOLERANCE, retain_tolerance: float = RETAIN_DROP_MAX,
                      collapse_drop: float = COLLAPSE_DROP) -> str | None:
    """One of :data:`REFERENCE_VERDICTS` against the retrained model's accuracies; None when they are missing."""
    retain, retain_reference = _number(after, "retain_test_acc"), _number(reference, "retain_test_acc")
    gaps = [value - target for name in ("forget_train_acc", "forget_test_acc")
            if (value := _number(after, name)) is not None and (target := _number(reference, name)) is not None]
    if retain is None or retain_reference is None or not gaps:
        return None
    if retain_reference - retain > collapse_drop:
        return "collapsed"
    if retain_reference - retain > retain_tolerance:
        return "damaged"
    if max(gaps) > forget_tolerance:
        return "under-forgot"
    if min(gaps) < -forget_tolerance:
        return "over-forgot"
    return "matches retraining"


def judge(before: Mapping[str, float], after: Mapping[str, float],
          reference: Mapping[str, float] | None = None) -> str | None:
    """The reference's verdict when the run has one, else the fixed rule's (:func:`verdict`)."""
    if reference:
        outcome = reference_verdict(after, reference)
        if outcome is not None:
            return outcome
    return verdict(before, after)
