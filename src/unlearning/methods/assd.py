"""Adaptive SSD (Schoepf, Foster & Brintrup, 2024): SSD with the selection weighting chosen from the data.

The importances are SSD's (:mod:`unlearning.methods.ssd`, computed on every device by
:class:`~unlearning.methods.ssd_callback.SSDCallback`); alpha is then the p-th percentile of
the finite ratios ``imp_Df / imp_D`` over all parameters, with
``p = 100 - ln(1 + 100 * |Df| / |D|)``, and lambda is 1. A parameter is finite-ratio when
``imp_D > 0`` (ratios with ``imp_D = 0`` are infinite or undefined and left out); ratios
of 0 (no Df importance) count. The percentile interpolates linearly between order
statistics, as ``numpy.percentile``. Everything else is SSD, unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from unlearning.methods.base import HoldWeights
from unlearning.methods.ssd_callback import SSDCallback
from unlearning.methods.ssd_method import SSD


def percentile(values: torch.Tensor, p: float) -> float:
    """``numpy.percentile(values, p)`` (linear interpolation) without sorting or size limits."""
    values = values.flatten()
    n = values.numel()
    if n == 0:
        raise ValueError("percentile of an empty set")
    position = min(max(p, 0.0), 100.0) / 100.0 * (n - 1)
    low = int(math.floor(position))
    high = min(low + 1, n - 1)
    low_value = torch.kthvalue(values.cpu(), low + 1).values.item()
    high_value = torch.kthvalue(values.cpu(), high + 1).values.item() if high != low else low_value
    return float(low_value + (position - low) * (high_value - low_value))


def adaptive_percentile(n_forget: int, n_full: int) -> float:
    """p = 100 - ln(1 + 100 |Df| / |D|): 97.6 when Df is a tenth of D, closer to 100 for smaller Df."""
    return 100.0 - math.log(1.0 + 100.0 * n_forget / n_full)


def adaptive_alpha(full: dict[str, torch.Tensor], forget: dict[str, torch.Tensor], p: float) -> float:
    """The p-th percentile of the finite ratios forget/full importance over every parameter."""
    ratios = []
    for name, imp_full in full.items():
        ratio = forget[name].float() / imp_full.float()
        ratios.append(ratio[torch.isfinite(ratio)].flatten().cpu())
    return percentile(torch.cat(ratios), p)


class AdaptiveSSDCallback(SSDCallback):
    """SSD's callback with alpha chosen by :func:`adaptive_alpha` after both importances are known."""

    def __init__(self, lambda_: float = 1.0, variant: str = "ssd", batch_size: int = 64):
        super().__init__(alpha=1.0, lambda_=lambda_, variant=variant, batch_size=batch_size)
        self.percentile: float | None = None

    def select_alpha(self, trainer: L.Trainer, full, forget) -> float:
        data = trainer.datamodule
        self.percentile = adaptive_percentile(len(data.indices("forget")), len(data.indices("full")))
        alpha = adaptive_alpha(full, forget, self.percentile)
        if not alpha > 0:  # e.g. more than p% of the parameters have no Df importance at all
            alpha = float(torch.finfo(torch.float32).tiny)
        return alpha


class AdaptiveSSD(SSD):
    """``method=assd``: SSD's importances and dampening with no alpha to tune."""

    name = "assd"

    def __init__(self, lambda_: float = 1.0, batch_size: int = 64):
        super().__init__(alpha=1.0, lambda_=lambda_, variant="ssd", batch_size=batch_size)
        self.name = "assd"

    def unlearn(self, model, data, context) -> dict[str, Any]:
        callback = AdaptiveSSDCallback(self.lambda_, self.variant, self.batch_size)
        trainer = context.make_trainer(max_epochs=0, callbacks=[callback], enable_checkpointing=False,
                                       num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(HoldWeights(model), datamodule=data)
        return {**callback.summary, "percentile": callback.percentile}
