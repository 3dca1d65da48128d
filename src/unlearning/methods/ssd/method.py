"""SSD, LFSSD, ASSD and Potion as one configurable method: :class:`SSDCallback` with the policy the YAML picks."""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import HoldWeights, MethodContext, UnlearningMethod
from unlearning.methods.ssd.callback import SSDCallback
from unlearning.methods.ssd.core import autocast_dtype
from unlearning.methods.ssd.policies import AlphaPolicy, FixedAlpha


class SSD(UnlearningMethod):
    """Selective Synaptic Dampening; ``variant="lfssd"`` is the label-free version, ``"potion"`` Potion's importance.

    ``policy`` is how alpha is chosen (:mod:`~unlearning.methods.ssd.policies`): the paper's
    :class:`FixedAlpha`, ASSD's percentile rule, the per-request search (``method.alpha=auto``,
    docs/auto_ssd.md) or Potion's search (docs/poison.md). A config picks it by ``_target_``
    (``conf/method/policy/``); ``method=ssd|lfssd|assd|potion`` are this class with another
    policy or variant.

    The importances are computed by :class:`SSDCallback` on every device of the configured
    strategy; ``trainer=ddp`` spreads them over processes with identical results. ``cache``
    (default on) reuses importances computed earlier for the same weights, data, batch size
    and options from the run's cache (``context.cache``), so an alpha x lambda sweep computes
    them once. ``autocast="bf16"`` and ``channels_last`` speed up the importance pass on
    GPUs; float32 (``autocast=None``) is the default and the paper's.
    """

    name = "ssd"

    def __init__(self, policy: AlphaPolicy | None = None, variant: str = "ssd", batch_size: int = 64,
                 cache: bool = True, autocast: str | None = None, channels_last: bool = False):
        if not isinstance(cache, bool) or not isinstance(channels_last, bool):
            raise ValueError(f"method.cache and method.channels_last must be true or false, got "
                             f"{cache!r} and {channels_last!r}")
        try:
            dtype = autocast_dtype(autocast)
        except ValueError as error:
            raise ValueError(f"method.autocast: {error}. bf16 runs the importance pass's forward in bfloat16 "
                             "(faster on recent GPUs); null keeps float32, the paper's setting") from None
        # Built now, so that a wrong variant or batch size fails before any work; the run's cache comes with it.
        self.callback = SSDCallback(policy if policy is not None else FixedAlpha(), variant, batch_size,
                                    autocast_dtype=dtype, channels_last=channels_last)
        self.cache = cache

    @property
    def policy(self) -> AlphaPolicy:
        return self.callback.policy

    @property
    def variant(self) -> str:
        return self.callback.variant

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        callback = self.callback
        callback.cache = context.cache if self.cache else None
        trainer = context.make_trainer(max_epochs=0, callbacks=[callback], enable_checkpointing=False,
                                       num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(HoldWeights(model), datamodule=data)
        return callback.summary
