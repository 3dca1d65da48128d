"""All metrics of one model from one forward pass over D and one over the test set.

The passes' logits can come from a :class:`~unlearning.cache.TensorCache`: the original
model is the same in every run of a sweep (every alpha, lambda, method and forget target),
so its logits over D and the test set are computed once and its metrics are recomputed
from them for each run's forget set (cheap: accuracies, the MIA regression and ZRF).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.evaluation.metrics import (
    accuracy,
    membership_inference_from_logits,
    per_class_accuracy,
    zrf_from_logits,
)
from unlearning.evaluation.predictions import predict
from unlearning.fingerprint import dataset_digest, split_digest, weights_digest

METRIC_NAMES = ("retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc", "test_acc", "mia", "zrf")

#: Bump when :func:`predict` changes in a way that changes its numbers.
PREDICTION_VERSION = "predictions-1"


def prediction_parts(weights: str, data: UnlearningDataModule, split: str) -> dict[str, Any] | None:
    """Everything a model's logits over ``split`` depend on: weights, images, transform, indices, labels."""
    dataset = dataset_digest(data)
    if dataset is None:
        return None
    return {"kind": "predictions", "version": PREDICTION_VERSION, "weights": weights, "dataset": dataset,
            "split": split_digest(data, split, with_labels=True)}


def predict_split(model: nn.Module, data: UnlearningDataModule, split: str, cache: Any = None,
                  weights: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of ``model`` over ``split`` (one batched pass), through ``cache`` when given."""
    if cache is None:
        return predict(model, data.loader(split))
    parts = prediction_parts(weights or weights_digest(model), data, split)
    if parts is None:
        return predict(model, data.loader(split))
    entry = cache.get_or_compute(parts, lambda: dict(zip(("logits", "labels"), predict(model, data.loader(split)),
                                                         strict=True)))
    return entry["logits"], entry["labels"]


def zrf_split(data: UnlearningDataModule) -> str:
    """ZRF is measured on Df-test; random forgetting has no Df-test, so it uses Df-train."""
    return "forget_test" if len(data.indices("forget_test")) else "forget"


def teacher_logits(random_model: nn.Module, data: UnlearningDataModule, cache: Any = None) -> torch.Tensor:
    """A randomly initialised model's logits on the ZRF split (compute once, reuse for every model)."""
    return predict_split(random_model, data, zrf_split(data), cache)[0]


def evaluate(model: nn.Module, data: UnlearningDataModule, random_logits: torch.Tensor,
             cache: Any = None) -> dict[str, Any]:
    """Accuracies (%), MIA and ZRF of ``model`` on the data module's splits.

    One batched pass over D gives Dr-train and Df-train; one over the test set gives
    Dr-test, Df-test and the whole test set; MIA and ZRF reuse those logits. Only the
    random teacher's logits (``random_logits``, from :func:`teacher_logits`) come from
    elsewhere, so that every model of a run is compared with the same teacher. With
    ``cache``, the two passes' logits are looked up (and stored) there: give it for a model
    that recurs across runs (the original), not for one that is new in every run.
    """
    weights = weights_digest(model) if cache is not None else None
    train_logits, train_labels = predict_split(model, data, "full", cache, weights)
    test_logits, test_labels = predict_split(model, data, "test", cache, weights)
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
