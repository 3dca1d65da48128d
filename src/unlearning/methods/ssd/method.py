"""SSD, LFSSD and ASSD as one configurable method: :class:`SSDCallback` with the policy the YAML picks."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError
from unlearning.methods.base import HoldWeights, MethodContext, UnlearningMethod
from unlearning.methods.ssd.callback import SSDCallback
from unlearning.methods.ssd.core import VARIANTS, autocast_dtype
from unlearning.methods.ssd.policies import (
    REFERENCE_SPLITS,
    AlphaPolicy,
    FixedAlpha,
    PercentileAlpha,
    PTNSearch,
    PTNSettings,
    SearchedAlpha,
)
from unlearning.methods.ssd.search import auto_settings, is_auto
from unlearning.validate import whole_number

#: ``method.policy`` values: how alpha is chosen (docs/methods.md).
POLICIES = ("fixed", "percentile", "auto", "ptn")


class SSD(UnlearningMethod):
    """Selective Synaptic Dampening; ``variant="lfssd"`` is the label-free version.

    ``policy`` picks how alpha is chosen: ``fixed`` (``alpha``, ``lambda_``: the paper),
    ``percentile`` (ASSD: from the ratios of the importances, ``reference_split`` retain or
    full), ``auto`` (the per-request search tuned by ``auto``, docs/auto_ssd.md; lambda is
    then chosen with alpha), ``ptn`` (Potion's search tuned by ``ptn``: ASSD's rule with the
    share searched until Df's accuracy falls to rho x its own, docs/poison.md). ``alpha=auto``
    is a shorthand for ``policy=auto``.

    The importances are computed by :class:`SSDCallback` on every device of the configured
    strategy; ``trainer=ddp`` spreads them over processes with identical results. ``cache``
    (default on) reuses importances computed earlier for the same weights, data, batch size
    and options from the run's cache (``context.cache``), so an alpha x lambda sweep computes
    them once. ``autocast="bf16"`` and ``channels_last`` speed up the importance pass on
    GPUs; float32 (``autocast=None``) is the default and the paper's.
    """

    name = "ssd"

    def __init__(self, alpha: float | str | None = 10.0, lambda_: float = 1.0, variant: str = "ssd",
                 batch_size: int = 64, cache: bool = True, autocast: str | None = None, channels_last: bool = False,
                 policy: str = "fixed", reference_split: str = "retain", auto: dict[str, Any] | None = None,
                 ptn: dict[str, Any] | None = None):
        if variant not in VARIANTS:
            raise UserError(f"method.variant={variant!r} is unknown; valid: {', '.join(VARIANTS)}.")
        self.policy = alpha_policy(policy, alpha, lambda_, reference_split, auto, ptn)
        self.batch_size = whole_number(batch_size, "method.batch_size",
                                       hint="It is the importance pass's batch size (paper: 64).")
        try:
            self.autocast_dtype = autocast_dtype(autocast)
        except ValueError as error:
            raise UserError(f"method.autocast: {error}. bf16 runs the importance pass's forward in bfloat16 "
                            "(faster on recent GPUs); null keeps float32, the paper's setting.") from None
        if not isinstance(cache, bool) or not isinstance(channels_last, bool):
            raise UserError(f"method.cache and method.channels_last must be true or false, got "
                            f"{cache!r} and {channels_last!r}.")
        self.variant, self.cache, self.channels_last = variant, cache, channels_last
        self.name = {"percentile": "assd", "ptn": "potion"}.get(self.policy.name, variant)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        callback = SSDCallback(self.policy, self.variant, self.batch_size,
                               importance_cache=context.cache if self.cache else None,
                               autocast_dtype=self.autocast_dtype, channels_last=self.channels_last)
        trainer = context.make_trainer(max_epochs=0, callbacks=[callback], enable_checkpointing=False,
                                       num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(HoldWeights(model), datamodule=data)
        return callback.summary


def alpha_policy(policy: str, alpha: Any, lambda_: Any, reference_split: str,
                 auto: dict[str, Any] | None, ptn: dict[str, Any] | None = None) -> AlphaPolicy:
    """The :class:`AlphaPolicy` that ``method.policy`` (and ``method.alpha``) ask for; mistakes are UserErrors."""
    if is_auto(alpha):
        if policy not in ("fixed", "auto"):
            raise UserError(f"method.alpha=auto asks for the automatic search, but method.policy={policy} chooses "
                            "alpha itself; give one of them.")
        policy = "auto"
    if policy not in POLICIES:
        raise UserError(f"method.policy={policy!r} is unknown; valid: {', '.join(POLICIES)} "
                        "(fixed: the configured alpha; percentile: ASSD; auto: searched per request; "
                        "ptn: Potion's search).")
    if policy == "auto":
        return SearchedAlpha(auto_settings(auto))
    lambda_ = _number("lambda_", lambda_)
    if policy == "ptn":
        if alpha is not None:
            raise UserError(f"method.policy=ptn (Potion) searches alpha itself; remove method.alpha={alpha!r}.")
        return PTNSearch(ptn_settings(ptn), lambda_)
    if policy == "percentile":
        if alpha is not None:
            raise UserError(f"method.policy=percentile (ASSD) chooses alpha from the importances; remove "
                            f"method.alpha={alpha!r} or use method.policy=fixed.")
        if reference_split not in REFERENCE_SPLITS:
            raise UserError(f"method.reference_split={reference_split!r} is unknown; valid: "
                            f"{', '.join(REFERENCE_SPLITS)} (retain: ASSD's reference code; full: the paper's imp_D).")
        return PercentileAlpha(lambda_, reference_split)
    if alpha is None:
        raise UserError("method.alpha is missing: give a number (paper: 10 for ResNet18, 5/25 for ViT) or auto.")
    return FixedAlpha(_number("alpha", alpha), lambda_)


def ptn_settings(options: dict[str, Any] | None) -> PTNSettings:
    """``method.ptn`` as :class:`PTNSettings`; unknown keys and bad values are UserErrors that name the key."""
    options = dict(options or {})
    known = set(PTNSettings.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"method.ptn has unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}.")
    try:
        if "max_tries" in options:
            options["max_tries"] = whole_number(options["max_tries"], "method.ptn.max_tries")
        return PTNSettings(**{k: v if k == "max_tries" else float(v) for k, v in options.items()})
    except (TypeError, ValueError) as error:
        raise UserError(f"method.ptn: {error}.") from None


def _number(label: str, value: Any) -> float:
    """A positive, finite alpha or lambda, or the UserError that explains both."""
    hint = (" alpha is the selection weighting (paper: 10 for ResNet18, 5/25 for ViT), or auto to choose it per "
            "request (docs/auto_ssd.md); lambda_ the dampening constant (paper: 1); both must be > 0.")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"SSD {label} must be a positive number, got {value!r}.{hint}") from None
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"SSD {label} must be a positive, finite number, got {value!r}.{hint}")
    return number
