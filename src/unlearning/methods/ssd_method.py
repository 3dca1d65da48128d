"""SSD and LFSSD as a configurable method: the Lightning callback run through a Trainer."""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError
from unlearning.methods.base import HoldWeights, MethodContext, UnlearningMethod
from unlearning.methods.ssd import VARIANTS, autocast_dtype, check_hyperparameters
from unlearning.methods.ssd_auto import auto_settings, is_auto
from unlearning.methods.ssd_auto_callback import AutoSSDCallback
from unlearning.methods.ssd_callback import SSDCallback
from unlearning.validate import whole_number


class SSD(UnlearningMethod):
    """Selective Synaptic Dampening; ``variant="lfssd"`` is the label-free version.

    The importances are computed by :class:`SSDCallback` on every device of the configured
    strategy; ``trainer=ddp`` spreads them over processes with identical results.

    ``cache`` (default on) reuses importances computed earlier for the same weights, data,
    batch size and options from the run's cache (``context.cache``), so an alpha x lambda
    sweep computes them once. ``autocast="bf16"`` and ``channels_last`` speed up the
    importance pass on GPUs; float32 (``autocast=None``) is the default and the paper's.

    ``alpha="auto"`` (``method.alpha=auto``) chooses how much to dampen per request with the
    search of :mod:`unlearning.methods.ssd_auto`, tuned by ``auto`` (docs/auto_ssd.md);
    lambda is then chosen with alpha and ``lambda_`` is not used.
    """

    name = "ssd"

    def __init__(self, alpha: float | str = 10.0, lambda_: float = 1.0, variant: str = "ssd", batch_size: int = 64,
                 cache: bool = True, autocast: str | None = None, channels_last: bool = False,
                 auto: dict[str, Any] | None = None):
        if variant not in VARIANTS:
            raise UserError(f"method.variant={variant!r} is unknown; valid: {', '.join(VARIANTS)}.")
        self.auto = auto_settings(auto) if is_auto(alpha) else None
        try:
            lambda_ = _number("lambda_", lambda_)
            if self.auto is None:
                alpha = _number("alpha", alpha)
            check_hyperparameters(1.0 if self.auto is not None else alpha, lambda_)
        except ValueError as error:
            raise UserError(f"{error}. alpha is the selection weighting (paper: 10 for ResNet18, 5/25 for ViT), or "
                            "auto to choose it per request (docs/auto_ssd.md); lambda_ the dampening constant "
                            "(paper: 1); both must be > 0.") from None
        batch_size = whole_number(batch_size, "method.batch_size",
                                  hint="It is the importance pass's batch size (paper: 64).")
        try:
            self.autocast_dtype = autocast_dtype(autocast)
        except ValueError as error:
            raise UserError(f"method.autocast: {error}. bf16 runs the importance pass's forward in bfloat16 "
                            "(faster on recent GPUs); null keeps float32, the paper's setting.") from None
        if not isinstance(cache, bool) or not isinstance(channels_last, bool):
            raise UserError(f"method.cache and method.channels_last must be true or false, got "
                            f"{cache!r} and {channels_last!r}.")
        self.alpha, self.lambda_, self.variant, self.batch_size = alpha, lambda_, variant, batch_size
        self.cache, self.channels_last = cache, channels_last
        self.name = variant
        self.uses_labels = variant == "ssd"

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        options = dict(importance_cache=context.cache if self.cache else None,
                       autocast_dtype=self.autocast_dtype, channels_last=self.channels_last)
        if self.auto is not None:
            callback = AutoSSDCallback(self.auto, self.variant, self.batch_size, **options)
        else:
            callback = SSDCallback(self.alpha, self.lambda_, self.variant, self.batch_size, **options)
        trainer = context.make_trainer(max_epochs=0, callbacks=[callback], enable_checkpointing=False,
                                       num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(HoldWeights(model), datamodule=data)
        return callback.summary


def _number(label: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"SSD {label} must be a positive number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"SSD {label} must be a positive number, got {value!r}") from None
