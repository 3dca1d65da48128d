"""Selective Synaptic Dampening: the pure-PyTorch core, alpha policies, one Lightning callback.

Layers, innermost first (each imports only the ones above it):

* :mod:`.core`: importances and dampening in plain PyTorch (no Lightning, no Hydra)::

      from unlearning.methods.ssd import importances, dampen

* :mod:`.search`: the automatic mode's per-request alpha search (plain PyTorch);
* :mod:`.policies`: how alpha is chosen once both importances are known (fixed, ASSD's
  percentile rule, the search, Potion's search), as plain objects a config picks by ``_target_``;
* :mod:`.distributed`: whole-batch sharding and the flat sum across devices;
* :mod:`.callback`: :class:`SSDCallback`, importances on every device, then the policy;
* :mod:`.method`: :class:`SSD`, the configurable method (``method=ssd|lfssd|assd|potion``).

Importing this package loads the core only; the Lightning-based names (``SSDCallback``,
``SSD`` ...) load on first use, so ``from unlearning.methods.ssd import dampen`` stays free
of Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

from unlearning.methods.ssd.core import (
    AUTOCAST_DTYPES,
    VARIANTS,
    accumulate_importances,
    apply_dampening,
    autocast_dtype,
    check_hyperparameters,
    class_coherent_batches,
    dampen,
    importance_loss,
    importances,
    restore,
    snapshot,
    ssd,
    zero_importances,
)

#: Public names that live in modules importing Lightning: loaded when first asked for.
_LAZY = {
    "SSDCallback": "callback",
    "SSD": "method",
    "importance_parts": "callback",
    "ShardedBatchSampler": "distributed",
    "AlphaPolicy": "policies",
    "FixedAlpha": "policies",
    "PercentileAlpha": "policies",
    "SearchedAlpha": "policies",
    "PTNSearch": "policies",
    "PTNSettings": "policies",
    "DampeningRequest": "policies",
    "ReferenceSplit": "policies",
    "AutoSearch": "search",
    "AutoSettings": "search",
    "Probe": "search",
    "sample_images": "search",
    "neighbour_vote": "neighbours",
    "scoped": "search",
}

__all__ = [
    "AUTOCAST_DTYPES", "VARIANTS", "accumulate_importances", "apply_dampening", "autocast_dtype",
    "check_hyperparameters", "class_coherent_batches", "dampen", "importance_loss", "importances", "restore",
    "snapshot", "ssd", "zero_importances", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
