"""How close an unlearned model is to the gold standard: a model retrained without Df.

- accuracy differences (unlearned - retrained, in points) on every split;
- Tug-of-War (Zhao et al., NeurIPS 2024): ``(1 - |dAcc(Df)|)(1 - |dAcc(Dr)|)(1 - |dAcc(test)|)``
  with accuracies as fractions, Df and Dr the forget and retained *training* sets; 1 = the
  retrained model's accuracies exactly;
- the mean per-sample Jensen-Shannon divergence (base 2, so in [0, 1]) between the two
  models' softmax outputs on Df-train and on the test set, for the unlearned and for the
  original model: "how far did the method move toward retrain" reads as the drop from
  ``js_*_original`` to ``js_*``;
- the gap in every membership figure (unlearned - retrained).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

ACCURACIES = ("retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc", "test_acc")
MEMBERSHIP = ("mia", "mia_strong", "mia_auc", "probe_forget_test_acc", "probe_forget_member", "probe_member_auc")


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Per-sample Jensen-Shannon divergence (bits) between the softmax outputs of two models."""
    log_p = F.log_softmax(logits_a.double(), dim=1)
    log_q = F.log_softmax(logits_b.double(), dim=1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=1)
    return ((0.5 * kl_pm + 0.5 * kl_qm) / math.log(2.0)).clamp(min=0.0)


def mean_js(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    return math.nan if logits_a.numel() == 0 else float(js_divergence(logits_a, logits_b).mean())


def tug_of_war(model: dict[str, Any], reference: dict[str, Any]) -> float:
    """Zhao et al.'s ToW from two metric dicts (accuracies in percent); 1 is the retrained model."""
    product = 1.0
    for key in ("forget_train_acc", "retain_train_acc", "test_acc"):
        product *= 1.0 - abs(float(model[key]) - float(reference[key])) / 100.0
    return product


def relative_to_reference(after: dict[str, Any], original: dict[str, Any], reference: dict[str, Any],
                          divergences: dict[str, float]) -> dict[str, float]:
    """Everything "unlearned vs retrained" that results.json stores under ``metrics.relative``."""
    relative: dict[str, float] = {}
    for key in ACCURACIES:
        relative[f"delta_{key}"] = float(after[key]) - float(reference[key])
    for key in MEMBERSHIP:
        if key in after and key in reference:
            relative[f"gap_{key}"] = float(after[key]) - float(reference[key])
    relative["tow"] = tug_of_war(after, reference)
    relative["tow_original"] = tug_of_war(original, reference)
    relative.update(divergences)
    return relative
