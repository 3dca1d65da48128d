"""One optimiser factory for every training loop: train.py's classifier, the methods, UNSIR's noise.

The reference code of the methods uses two optimisers, SGD (with momentum and weight
decay) and Adam; building them in one place keeps the same setting meaning the same
thing everywhere, and an unknown name fails the same clear way, before any training.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from unlearning.validate import one_of

#: The optimisers a config can name.
OPTIMIZERS = ("sgd", "adam")


def optimizer_name(name: str, key: str = "method.optimizer") -> str:
    """``name`` when it is an optimiser :func:`build_optimizer` knows; a UserError naming ``key`` otherwise."""
    return one_of(name, key, OPTIMIZERS)


def build_optimizer(name: str, params: Iterable, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                    key: str = "method.optimizer") -> torch.optim.Optimizer:
    """SGD (with ``momentum`` and ``weight_decay``) or Adam (``weight_decay``; Adam has no momentum setting)."""
    if optimizer_name(name, key) == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
