"""What poison and mislabel requests are judged by: was the bad behaviour removed, and at what cost?

A poisoned model answers the attacker's label whenever the trigger is present; unlearning
should *heal* it (triggered test images classified by their true label again) without losing
clean accuracy. A mislabelled model has memorised wrong labels; unlearning should stop it
answering them. Both are measured on all corrupted training samples, not only on the
identified ones (Df), because the unidentified ones stay in Dr: a method that only forgets
what it was shown has not healed the model (Potion, Schoepf et al. 2024).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.evaluation.metrics import accuracy

#: The figures a poison run adds to each model's metrics (accuracies and rates in %).
POISON_NAMES = ("healed_acc", "attack_success", "poison_acc", "poison_identified_acc", "poison_unidentified_acc")
#: The figures a mislabel run adds: accuracy on the wrong labels (memorised errors) and on the true ones.
MISLABEL_NAMES = ("error_acc", "error_identified_acc", "error_unidentified_acc", "error_true_acc")


def corruption_names(data: UnlearningDataModule) -> tuple[str, ...]:
    """The extra metric names of ``data``'s task (none for a task on clean data)."""
    corruption = data.corruption
    if corruption is None:
        return ()
    return POISON_NAMES if corruption.kind == "poison" else MISLABEL_NAMES


def corruption_metrics(train_logits: torch.Tensor, triggered_logits: torch.Tensor | None,
                       data: UnlearningDataModule) -> dict[str, float]:
    """The poison or mislabel figures of one model from its logits over D (and over the triggered test set).

    ``train_logits`` are over D in index order as the model was trained on it (poisons with
    their trigger); ``triggered_logits`` over the test set with the trigger pasted on (poison only).
    """
    corruption = data.corruption
    if corruption is None:
        return {}
    found = np.asarray(data.indices("forget"))
    hidden = np.setdiff1d(corruption.indices, found)
    wrong = torch.as_tensor(corruption.labels)
    true = torch.as_tensor(corruption.true_labels)

    def acc(rows: np.ndarray, labels: torch.Tensor) -> float:
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        return accuracy(train_logits[rows_t], labels[rows_t]) if len(rows) else float("nan")

    if corruption.kind == "mislabel":
        return {"error_acc": acc(corruption.indices, wrong), "error_identified_acc": acc(found, wrong),
                "error_unidentified_acc": acc(hidden, wrong), "error_true_acc": acc(corruption.indices, true)}
    test_labels = torch.as_tensor(data.bundle.test_fine)
    predicted = triggered_logits.argmax(dim=1)
    others = test_labels != corruption.target
    return {
        "healed_acc": accuracy(triggered_logits, test_labels),
        "attack_success": float(100.0 * (predicted[others] == corruption.target).float().mean()) if others.any()
        else float("nan"),
        "poison_acc": acc(corruption.indices, wrong),
        "poison_identified_acc": acc(found, wrong),
        "poison_unidentified_acc": acc(hidden, wrong),
    }


def triggered_test_logits(model: nn.Module, data: UnlearningDataModule, cache: Any = None,
                          show_progress: bool = False) -> torch.Tensor | None:
    """The model's logits over the test set with the trigger pasted on (None unless the task poisons)."""
    if data.corruption is None or data.corruption.trigger is None:
        return None
    from unlearning.evaluation.evaluate import predict_split

    return predict_split(model, data, "triggered_test", cache, show_progress=show_progress)[0]
