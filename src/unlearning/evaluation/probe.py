"""A linear probe of the penultimate features: does the representation still know Df?

Accuracy on Df can fall because only the output layer stopped naming the class while the
features still separate it: re-fitting the output layer on a few hundred images then
brings Df back (measured here: SSD on digits, Df-test 33-62 % -> 94-100 %). The probe
measures that directly. The model stays frozen; a seeded scikit-learn logistic regression
is fitted on its penultimate features (the input of its output layer, see
:func:`unlearning.evaluation.predictions.feature_layer`) of a labelled training sample that
contains a few Df-train images and many retained-train images, as an attacker holding a
handful of labelled examples of the forgotten class would. Then

- full-class and sub-class forgetting: ``probe_forget_test_acc``, the probe's accuracy on
  Df-test (and ``probe_retain_test_acc`` as its sanity check), averaged over
  ``PROBE_DRAWS`` seeded draws of ``FORGET_SAMPLES`` Df-train images. Near the original
  model's value: the features still know the class; near the retrained model's: they forgot it.

  Why few-shot: with every Df-train image, a linear probe finds the class in almost any good
  features, also in those of a model that never saw it (digits: original 100 %, retrained
  97 %). With 10 images it needs features in which the class is already a tight cluster:
  original 97 %, SSD (output suppressed, Df-test 0 %) 96 %, retrained 76 % (digit 3, seed 0).
- random forgetting (no class to probe): a membership probe, members = retained-train,
  non-members = half of the test set, reported as the fraction of Df-train called member
  (``probe_forget_member``) and the AUC against the other half (``probe_member_auc``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchmetrics.functional.classification import binary_auroc

from unlearning.evaluation.membership import held_out_split

#: At most this many retained-train samples enter the probe's training set (all classes, seeded).
RETAIN_SAMPLES = 4000
#: This many Df-train samples enter it (a few-shot probe; see the module docstring).
FORGET_SAMPLES = 10
#: Independent draws of those samples; the reported accuracy is their mean.
PROBE_DRAWS = 5


def _subsample(indices: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    indices = np.asarray(indices)
    return indices if len(indices) <= limit else np.sort(rng.choice(indices, limit, replace=False))


def _probe_model(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0, random_state=seed))


def _fit(model, x: np.ndarray, y: np.ndarray):
    with warnings.catch_warnings():  # a probe that has not fully converged is still a probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def class_probe(train_features: torch.Tensor, train_labels: torch.Tensor, retain: np.ndarray, forget: np.ndarray,
                test_features: torch.Tensor, test_labels: torch.Tensor, retain_test: np.ndarray,
                forget_test: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Accuracy (%) of a linear probe fitted on Df-train + retained-train features, on Df-test and Dr-test."""
    if len(forget_test) == 0 or len(forget) == 0:
        return {"probe_forget_test_acc": math.nan, "probe_retain_test_acc": math.nan}
    rng = np.random.default_rng(seed)
    retained = _subsample(retain, RETAIN_SAMPLES, rng)
    forget_acc, retain_acc = [], []
    for _ in range(PROBE_DRAWS):
        fit_on = np.concatenate([_subsample(forget, FORGET_SAMPLES, rng), retained])
        probe = _fit(_probe_model(seed), train_features[fit_on].numpy(), train_labels[fit_on].numpy())
        forget_acc.append(_accuracy(probe, test_features, test_labels, np.asarray(forget_test)))
        retain_acc.append(_accuracy(probe, test_features, test_labels, np.asarray(retain_test)))
    return {"probe_forget_test_acc": float(np.mean(forget_acc)), "probe_retain_test_acc": float(np.mean(retain_acc))}


def _accuracy(probe, features: torch.Tensor, labels: torch.Tensor, rows: np.ndarray) -> float:
    if len(rows) == 0:
        return math.nan
    return float((probe.predict(features[rows].numpy()) == labels[rows].numpy()).mean() * 100.0)


def membership_probe(train_features: torch.Tensor, retain: np.ndarray, forget: np.ndarray,
                     test_features: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Fraction of Df-train a linear probe on features calls member, and its AUC against held-out test samples."""
    n_test = len(test_features)
    if len(forget) == 0 or n_test < 2:
        return {"probe_forget_member": math.nan, "probe_member_auc": math.nan}
    rng = np.random.default_rng(seed)
    fit_test, heldout = held_out_split(n_test, seed)
    members = _subsample(retain, len(fit_test), rng)
    x = np.concatenate([train_features[members].numpy(), test_features[fit_test].numpy()])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(fit_test))])
    probe = _fit(_probe_model(seed), x, y)
    forget_scores = probe.predict_proba(train_features[np.asarray(forget)].numpy())[:, 1]
    heldout_scores = probe.predict_proba(test_features[heldout].numpy())[:, 1]
    scores = torch.as_tensor(np.concatenate([forget_scores, heldout_scores]))
    truth = torch.cat([torch.ones(len(forget_scores)), torch.zeros(len(heldout_scores))]).long()
    return {"probe_forget_member": float((forget_scores > 0.5).mean()),
            "probe_member_auc": float(binary_auroc(scores, truth))}
