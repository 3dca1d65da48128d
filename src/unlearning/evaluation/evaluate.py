"""All metrics of one model from one forward pass over D and one over the test set."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.evaluation.metrics import accuracy, membership_inference_from_logits, per_class_accuracy, zrf_from_logits
from unlearning.evaluation.predictions import predict

METRIC_NAMES = ("retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc", "test_acc", "mia", "zrf")


def zrf_split(data: UnlearningDataModule) -> str:
    """ZRF is measured on Df-test; random forgetting has no Df-test, so it uses Df-train."""
    return "forget_test" if len(data.indices("forget_test")) else "forget"


def teacher_logits(random_model: nn.Module, data: UnlearningDataModule) -> torch.Tensor:
    """A randomly initialised model's logits on the ZRF split (compute once, reuse for every model)."""
    return predict(random_model, data.loader(zrf_split(data)))[0]


def evaluate(model: nn.Module, data: UnlearningDataModule, random_logits: torch.Tensor) -> dict[str, Any]:
    """Accuracies (%), MIA and ZRF of ``model`` on the data module's splits.

    One batched pass over D gives Dr-train and Df-train; one over the test set gives
    Dr-test, Df-test and the whole test set; MIA and ZRF reuse those logits. Only the
    random teacher's logits (``random_logits``, from :func:`teacher_logits`) come from
    elsewhere, so that every model of a run is compared with the same teacher.
    """
    train_logits, train_labels = predict(model, data.loader("full"))
    test_logits, test_labels = predict(model, data.loader("test"))
    retain, forget = torch.as_tensor(data.indices("retain")), torch.as_tensor(data.indices("forget"))
    retain_t, forget_t = torch.as_tensor(data.indices("retain_test")), torch.as_tensor(data.indices("forget_test"))
    zrf_logits = test_logits[forget_t] if zrf_split(data) == "forget_test" else train_logits[forget]
    return {
        "retain_train_acc": accuracy(train_logits[retain], train_labels[retain]),
        "forget_train_acc": accuracy(train_logits[forget], train_labels[forget]),
        "retain_test_acc": accuracy(test_logits[retain_t], test_labels[retain_t]),
        "forget_test_acc": accuracy(test_logits[forget_t], test_labels[forget_t]),
        "test_acc": accuracy(test_logits, test_labels),
        "mia": membership_inference_from_logits(train_logits[retain], train_logits[forget], test_logits),
        "zrf": zrf_from_logits(zrf_logits, random_logits),
        "per_class_test_acc": per_class_accuracy(test_logits, test_labels),
    }
