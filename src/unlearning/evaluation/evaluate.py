"""All metrics of one model from one forward pass over D and one over the test set.

The passes' logits (and penultimate features, for the probe) can come from a
:class:`~unlearning.cache.TensorCache`: the original model and the retrained reference are
the same in every run of a sweep (every alpha, lambda and method), so their outputs over D
and the test set are computed once and their metrics are recomputed from them for each run
(cheap: accuracies, the attacks' fits, the probe's fit and ZRF).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.distributed import is_rank_zero
from unlearning.evaluation.against_reference import mean_js, relative_to_reference
from unlearning.evaluation.membership import held_out_split, strong_membership_attack
from unlearning.evaluation.metrics import (
    accuracy,
    membership_inference_from_logits,
    per_class_accuracy,
    zrf_from_logits,
)
from unlearning.evaluation.predictions import predict
from unlearning.evaluation.probe import class_probe, membership_probe
from unlearning.fingerprint import dataset_digest, digest_tensors, split_digest, weights_digest
from unlearning.progress import progress

METRIC_NAMES = ("retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc", "test_acc", "mia", "zrf")
#: Accuracies on the validation split (training data held out of D): what a hyperparameter search
#: may tune on (``objective``), since the test split only reports.
VALIDATION_NAMES = ("val_acc", "retain_val_acc", "forget_val_acc")
#: The gold-standard figures (see docs/evaluation.md); a setting can turn each group off.
STRONG_MIA_NAMES = ("mia_strong", "mia_auc")
PROBE_NAMES = ("probe_forget_test_acc", "probe_retain_test_acc", "probe_forget_member", "probe_member_auc")

#: Bump when :func:`predict` changes in a way that changes its numbers.
PREDICTION_VERSION = "predictions-1"


@dataclass(frozen=True)
class EvaluationSettings:
    """Which of the stronger figures to compute besides the paper's (``evaluation.*`` in unlearn.yaml)."""

    strong_mia: bool = True
    probe: bool = True
    seed: int = 0
    #: Progress bars over the passes and fits (rank 0 only; ``trainer.enable_progress_bar``). Changes no number.
    show_progress: bool = False

    def parts(self) -> dict[str, Any]:
        """The settings that change numbers (a cache key's part): all but ``show_progress``."""
        return {key: value for key, value in asdict(self).items() if key != "show_progress"}


@dataclass
class Outputs:
    """One model's logits (and features) over D (``train_*``), the test set and the validation split, in index order."""

    train_logits: torch.Tensor
    train_labels: torch.Tensor
    test_logits: torch.Tensor
    test_labels: torch.Tensor
    train_features: torch.Tensor | None = None
    test_features: torch.Tensor | None = None
    val_logits: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


def prediction_parts(weights: str, data: UnlearningDataModule, split: str,
                     features: bool = False) -> dict[str, Any] | None:
    """Everything a model's outputs over ``split`` depend on: weights, images, transform, indices, labels."""
    dataset = dataset_digest(data)
    if dataset is None:
        return None
    parts = {"kind": "predictions", "version": PREDICTION_VERSION, "weights": weights, "dataset": dataset,
             "split": split_digest(data, split, with_labels=True)}
    if features:
        parts["features"] = True
    return parts


def predict_split(model: nn.Module, data: UnlearningDataModule, split: str, cache: Any = None,
                  weights: str | None = None, features: bool = False,
                  show_progress: bool = False) -> tuple[torch.Tensor, ...]:
    """Logits and labels (and features) of ``model`` over ``split`` in one pass, through ``cache`` when given."""
    names = ("logits", "labels", "features") if features else ("logits", "labels")

    def compute() -> tuple[torch.Tensor, ...]:
        return predict(model, data.loader(split), features=features, show_progress=show_progress,
                       description=f"evaluation over {split}")

    parts = None if cache is None else prediction_parts(weights or weights_digest(model), data, split, features)
    if parts is None:
        return compute()
    entry = cache.get_or_compute(parts, lambda: dict(zip(names, compute(), strict=True)))
    return tuple(entry[name] for name in names)


def model_outputs(model: nn.Module, data: UnlearningDataModule, cache: Any = None,
                  features: bool = True, weights: str | None = None, show_progress: bool = False) -> Outputs:
    """The two passes of :func:`evaluate`, kept so that two models' outputs can be compared."""
    weights = weights or (weights_digest(model) if cache is not None else None)
    train = predict_split(model, data, "full", cache, weights, features, show_progress)
    test = predict_split(model, data, "test", cache, weights, features, show_progress)
    val = predict_split(model, data, "val", cache, weights, False, show_progress) if len(data.indices("val")) \
        else (None, None)
    return Outputs(train[0], train[1], test[0], test[1], *((train[2], test[2]) if features else (None, None)),
                   val_logits=val[0], val_labels=val[1])


def zrf_split(data: UnlearningDataModule) -> str:
    """ZRF is measured on Df-test; random forgetting has no Df-test, so it uses Df-train."""
    return "forget_test" if len(data.indices("forget_test")) else "forget"


def teacher_logits(random_model: nn.Module, data: UnlearningDataModule, cache: Any = None,
                   show_progress: bool = False) -> torch.Tensor:
    """A randomly initialised model's logits on the ZRF split (compute once, reuse for every model)."""
    return predict_split(random_model, data, zrf_split(data), cache, show_progress=show_progress)[0]


def metrics_of(outputs: Outputs, data: UnlearningDataModule, random_logits: torch.Tensor,
               settings: EvaluationSettings = EvaluationSettings()) -> dict[str, Any]:
    """Accuracies (%), the paper's MIA and ZRF, and (per ``settings``) the strong attack and the probe."""
    o = outputs
    retain, forget = np.asarray(data.indices("retain")), np.asarray(data.indices("forget"))
    retain_t, forget_t = np.asarray(data.indices("retain_test")), np.asarray(data.indices("forget_test"))
    zrf_logits = o.test_logits[forget_t] if zrf_split(data) == "forget_test" else o.train_logits[forget]
    metrics: dict[str, Any] = {
        "retain_train_acc": accuracy(o.train_logits[retain], o.train_labels[retain]),
        "forget_train_acc": accuracy(o.train_logits[forget], o.train_labels[forget]),
        "retain_test_acc": accuracy(o.test_logits[retain_t], o.test_labels[retain_t]),
        "forget_test_acc": accuracy(o.test_logits[forget_t], o.test_labels[forget_t]),
        "test_acc": accuracy(o.test_logits, o.test_labels),
        "mia": membership_inference_from_logits(o.train_logits[retain], o.train_logits[forget], o.test_logits),
        "zrf": zrf_from_logits(zrf_logits, random_logits),
    }
    probe = settings.probe and o.train_features is not None
    with progress(total=int(settings.strong_mia) + int(probe), description="evaluation: attack and probe fits",
                  enabled=settings.show_progress and is_rank_zero() and (settings.strong_mia or probe),
                  unit="fit") as bar:
        if settings.strong_mia:
            metrics.update(strong_attack(o, retain, forget, retain_t, forget_t, settings.seed))
            bar.update(1)
        if probe:
            if len(forget_t):
                metrics.update(class_probe(o.train_features, o.train_labels, retain, forget, o.test_features,
                                           o.test_labels, retain_t, forget_t, settings.seed))
            else:
                metrics.update(membership_probe(o.train_features, retain, forget, o.test_features, settings.seed))
            bar.update(1)
    metrics["per_class_test_acc"] = per_class_accuracy(o.test_logits, o.test_labels)
    metrics.update(validation_metrics(o, data))
    return metrics


def validation_metrics(o: Outputs, data: UnlearningDataModule) -> dict[str, float]:
    """Accuracies (%) on the validation split, all of it and its retained / forgotten parts (NaN when empty)."""
    if o.val_logits is None:
        return dict.fromkeys(VALIDATION_NAMES, float("nan"))
    retain, forget = np.asarray(data.indices("retain_val")), np.asarray(data.indices("forget_val"))
    return {"val_acc": accuracy(o.val_logits, o.val_labels),
            "retain_val_acc": accuracy(o.val_logits[retain], o.val_labels[retain]),
            "forget_val_acc": accuracy(o.val_logits[forget], o.val_labels[forget])}


#: Bump when :func:`metrics_of` changes in a way that changes its numbers.
METRICS_VERSION = "metrics-2"


def cached_metrics(outputs: Outputs, data: UnlearningDataModule, random_logits: torch.Tensor,
                   settings: EvaluationSettings, cache: Any, weights: str) -> dict[str, Any]:
    """:func:`metrics_of` for a model that recurs in every run of a sweep (the original, the reference).

    Its metrics depend only on its weights, the splits, the teacher and the settings, so they are
    stored beside its outputs: later runs skip the attack's and the probe's fits too.
    """
    dataset = dataset_digest(data) if cache is not None else None
    if dataset is None:
        return metrics_of(outputs, data, random_logits, settings)
    parts = {"kind": "metrics", "version": METRICS_VERSION, "weights": weights, "dataset": dataset,
             "splits": {split: split_digest(data, split, with_labels=True)
                        for split in ("retain", "forget", "retain_test", "forget_test")},
             "teacher": digest_tensors([("teacher", random_logits)]), "settings": settings.parts()}

    def compute() -> dict[str, torch.Tensor]:
        values = metrics_of(outputs, data, random_logits, settings)
        return {name: torch.as_tensor(value, dtype=torch.float64) for name, value in values.items()}

    entry = cache.get_or_compute(parts, compute)
    return {name: value.tolist() if value.dim() else float(value) for name, value in entry.items()}


def evaluate_recurring(model: nn.Module, data: UnlearningDataModule, random_logits: torch.Tensor,
                       settings: EvaluationSettings, cache: Any) -> tuple[Outputs, dict[str, Any]]:
    """Outputs and metrics of a model that every run of a sweep evaluates (the original, the reference).

    Both come from ``cache`` after the first run, keyed by the model's weights.
    """
    weights = weights_digest(model)
    outputs = model_outputs(model, data, cache, features=settings.probe, weights=weights,
                            show_progress=settings.show_progress)
    return outputs, cached_metrics(outputs, data, random_logits, settings, cache, weights)


def strong_attack(o: Outputs, retain: np.ndarray, forget: np.ndarray, retain_t: np.ndarray, forget_t: np.ndarray,
                  seed: int) -> dict[str, float]:
    """The multi-feature attack: fitted on Dr-train vs Dr-test, Df-train scored against held-out non-members.

    Held-out non-members: Df-test (same classes as Df) when there is one, else half of the test set
    (the attack is then fitted on the other half).
    """
    if len(forget_t):
        fit_test, heldout = retain_t, forget_t
    else:
        first, second = held_out_split(len(retain_t), seed)
        fit_test, heldout = retain_t[first], retain_t[second]
    return strong_membership_attack(o.train_logits[retain], o.train_labels[retain],
                                    o.test_logits[fit_test], o.test_labels[fit_test],
                                    o.train_logits[forget], o.train_labels[forget],
                                    o.test_logits[heldout], o.test_labels[heldout], seed=seed)


def evaluate(model: nn.Module, data: UnlearningDataModule, random_logits: torch.Tensor,
             cache: Any = None, settings: EvaluationSettings = EvaluationSettings()) -> dict[str, Any]:
    """Accuracies (%), MIA, ZRF (and the strong attack and probe) of ``model`` on the data module's splits.

    One batched pass over D gives Dr-train and Df-train; one over the test set gives
    Dr-test, Df-test and the whole test set; every metric reuses those outputs. Only the
    random teacher's logits (``random_logits``, from :func:`teacher_logits`) come from
    elsewhere, so that every model of a run is compared with the same teacher. With
    ``cache``, the two passes' outputs are looked up (and stored) there: give it for a model
    that recurs across runs (the original, the reference), not for one that is new in every run.
    """
    outputs = model_outputs(model, data, cache, features=settings.probe, show_progress=settings.show_progress)
    return metrics_of(outputs, data, random_logits, settings)


def compare_with_reference(after: tuple[Outputs, dict[str, Any]], original: tuple[Outputs, dict[str, Any]],
                           reference: tuple[Outputs, dict[str, Any]], data: UnlearningDataModule) -> dict[str, float]:
    """``metrics.relative`` of results.json: accuracy deltas, ToW, JS divergences and membership gaps."""
    forget = np.asarray(data.indices("forget"))
    (after_out, after_m), (original_out, original_m), (reference_out, reference_m) = after, original, reference
    divergences = {
        "js_forget": mean_js(after_out.train_logits[forget], reference_out.train_logits[forget]),
        "js_test": mean_js(after_out.test_logits, reference_out.test_logits),
        "js_forget_original": mean_js(original_out.train_logits[forget], reference_out.train_logits[forget]),
        "js_test_original": mean_js(original_out.test_logits, reference_out.test_logits),
    }
    return relative_to_reference(after_m, original_m, reference_m, divergences)
