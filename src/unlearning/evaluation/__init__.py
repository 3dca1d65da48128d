"""Metrics of the SSD paper: accuracies, membership inference and ZRF, each usable on its own.

:func:`unlearning.evaluation.evaluate.evaluate` computes all of them for one model from one
batched forward pass over the training set and one over the test set; it needs the data
module (hence Lightning) and is not imported here, so that the plain-PyTorch parts
(``predict``, the metrics) import alone.
"""

from unlearning.evaluation.metrics import (
    accuracy,
    entropy,
    membership_inference,
    membership_inference_from_logits,
    zrf,
    zrf_from_logits,
)
from unlearning.evaluation.predictions import predict

__all__ = [
    "accuracy",
    "entropy",
    "membership_inference",
    "membership_inference_from_logits",
    "predict",
    "zrf",
    "zrf_from_logits",
]

