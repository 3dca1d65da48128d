"""The SSD paper's metrics, as functions of a model and loaders or of precomputed logits."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from unlearning.evaluation.predictions import predict


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Sample-weighted accuracy in percent; NaN for an empty set (e.g. Df-test of random forgetting)."""
    if labels.numel() == 0:
        return math.nan
    value = multiclass_accuracy(logits, labels, num_classes=logits.shape[1], average="micro")
    return float(value) * 100.0


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Accuracy in percent of each class (NaN where a class has no sample)."""
    values = multiclass_accuracy(logits, labels, num_classes=logits.shape[1], average="none")
    present = torch.bincount(labels, minlength=logits.shape[1]) > 0
    return [float(v) * 100.0 if ok else math.nan for v, ok in zip(values, present, strict=True)]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each sample's softmax: the attack's only feature."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def membership_inference_from_logits(
    retain_logits: torch.Tensor, forget_logits: torch.Tensor, test_logits: torch.Tensor
) -> float:
    """Fraction of forget samples that an entropy-based attack calls members.

    As in the SSD paper's code: a logistic regression (balanced class weights, lbfgs) on
    the softmax entropy, fitted with retain-train samples as members (1) and test samples
    as non-members (0), then applied to the forget-train samples.
    """
    if forget_logits.numel() == 0 or retain_logits.numel() == 0 or test_logits.numel() == 0:
        return math.nan
    features = torch.cat([entropy(retain_logits), entropy(test_logits)]).numpy().reshape(-1, 1)
    members = np.concatenate([np.ones(len(retain_logits)), np.zeros(len(test_logits))])
    attack = LogisticRegression(class_weight="balanced", solver="lbfgs")
    attack.fit(features, members)
    verdict = attack.predict(entropy(forget_logits).numpy().reshape(-1, 1))
    return float(verdict.mean())


def membership_inference(model: nn.Module, retain_loader: Iterable, forget_loader: Iterable,
                         test_loader: Iterable) -> float:
    """Membership inference on ``model`` with batched forward passes (see ``membership_inference_from_logits``)."""
    return membership_inference_from_logits(
        predict(model, retain_loader)[0], predict(model, forget_loader)[0], predict(model, test_loader)[0]
    )


def zrf_from_logits(model_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Zero-retrain forgetting score: 1 - JS(p, q) as the bad-teacher paper's code computes it.

    With p the unlearned model's and q a randomly initialised model's softmax and
    m = (p + q) / 2, ZRF = 1 - 0.5 * mean(m (log m - log p)) - 0.5 * mean(m (log m - log q)).
    The means run over all N x C entries (``F.kl_div``'s default reduction in the reference
    code), not over samples of per-sample sums, and ``F.kl_div(log p, m)`` is KL(m || p): the
    KL terms run the other way from the textbook Jensen-Shannon divergence's KL(p || m), so the
    score is not bounded by ln 2 and can fall below 0 (README, Metrics). We keep the reference
    definition so that numbers compare with the papers that report ZRF; the known-answer tests
    (tests/test_metrics_known_answers.py) pin it. 1 means "behaves like a random model" on the
    forget data.
    """
    if model_logits.numel() == 0:
        return math.nan
    log_p = F.log_softmax(model_logits.float(), dim=1)
    log_q = F.log_softmax(teacher_logits.float(), dim=1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    m = log_m.exp()
    js = 0.5 * (m * (log_m - log_p)).mean() + 0.5 * (m * (log_m - log_q)).mean()
    return float(1.0 - js)


def zrf(model: nn.Module, random_model: nn.Module, forget_loader: Iterable) -> float:
    """ZRF of ``model`` against a randomly initialised ``random_model`` on ``forget_loader``."""
    return zrf_from_logits(predict(model, forget_loader)[0], predict(random_model, forget_loader)[0])
