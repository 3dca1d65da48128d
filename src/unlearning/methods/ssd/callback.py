"""SSD as one Lightning Callback: importances on every device, then an alpha policy dampens.

:class:`SSDCallback` reads as the method does: shard the batches over the ranks, accumulate
squared (or absolute) gradients locally, reduce the sums across ranks, let the policy choose
alpha, dampen. Every rank dampens identically, so the replicas stay in sync. The surgery is
the pure core's (:mod:`unlearning.methods.ssd.core`), the sharding and the collective are
:mod:`~unlearning.methods.ssd.distributed`'s, the cache handshake the cache's own
(:meth:`~unlearning.cache.TensorCache.get_or_compute_agreed`).

With a :class:`~unlearning.cache.TensorCache`, each importance is looked up first under a
digest of exactly its inputs (:func:`importance_parts`); under DDP rank 0 alone looks up
and the others follow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from unlearning.distributed import is_rank_zero
from unlearning.evaluation.predictions import predict
from unlearning.fingerprint import dataset_digest, split_digest, weights_digest
from unlearning.methods.ssd.core import (
    VARIANTS,
    accumulate_importances,
    class_coherent_batches,
    zero_importances,
)
from unlearning.methods.ssd.distributed import RankZeroAgreement, ShardedBatchSampler, sum_over_ranks
from unlearning.methods.ssd.policies import AlphaPolicy, DampeningRequest, ReferenceSplit, grouped_by
from unlearning.progress import progress, trainer_shows_progress

#: Bump when the importance computation changes in a way that changes its numbers.
IMPORTANCE_VERSION = "ssd-importance-1"


def importance_parts(weights: str, data: Any, split: str, variant: str, batch_size: int,
                     autocast: torch.dtype | None = None, channels_last: bool = False) -> dict[str, Any] | None:
    """Everything an importance depends on, as a cache description; None when the data has no digest.

    The weights, the images and transform, the indices of ``split`` in loader order (their
    labels too for SSD; LFSSD uses none), the batch size, the variant and the numeric
    options. D's importance thus never depends on the forget set, and one entry serves
    every forget target of a model. The device count and type are left out on purpose:
    they change the numbers only by float rounding.
    """
    dataset = dataset_digest(data)
    if dataset is None:
        return None
    return {
        "kind": "importance", "version": IMPORTANCE_VERSION, "weights": weights, "dataset": dataset,
        "split": split_digest(data, split, with_labels=variant == "ssd"), "variant": variant,
        "batch_size": int(batch_size), "autocast": str(autocast) if autocast else None,
        "channels_last": bool(channels_last),
    }


class SSDCallback(L.Callback):
    """Computes the reference importance and imp_Df across all devices at ``on_fit_start``, then dampens.

    ``policy`` chooses alpha (:mod:`~unlearning.methods.ssd.policies`, e.g.
    ``FixedAlpha(10.0)``, the paper's). ``variant`` and ``batch_size`` are checked here, once:
    this is where the importances are configured, for the SSD method and for library use. Run it with ``trainer.fit(HoldWeights(model), datamodule=dm)`` and
    ``max_epochs=0``: the hook fires after the strategy has set up the processes and before
    any training, the same place Lightning's own weight-surgery callbacks act. After the fit,
    :attr:`summary` holds what was chosen and done, :attr:`reference_importance` and
    :attr:`forget_importance` the importances used.
    """

    def __init__(
        self,
        policy: AlphaPolicy,
        variant: str = "ssd",
        batch_size: int = 64,
        importance_cache: Any = None,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"method.variant={variant!r} is unknown; valid: {', '.join(VARIANTS)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"method.batch_size must be a whole number >= 1 (the importance pass's batch size; "
                             f"paper: 64), got {batch_size!r}")
        if not isinstance(policy, AlphaPolicy):
            raise TypeError(f"SSDCallback's policy must be an AlphaPolicy (e.g. FixedAlpha(10.0)), got {policy!r}")
        self.policy = policy
        self.variant, self.batch_size = variant, batch_size
        self.cache = importance_cache
        self.autocast_dtype, self.channels_last = autocast_dtype, bool(channels_last)
        self.cache_use: dict[str, str] = {}
        self.summary: dict[str, Any] = {}
        self.reference_importance: dict[str, torch.Tensor] | None = None
        self.forget_importance: dict[str, torch.Tensor] | None = None
        self._weights: str | None = None

    # ------------------------------------------------------------------ the flow
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        self.cache_use, self._weights = {}, None
        request = self.request(trainer)
        reference = self.policy.compared_with(request.task)
        start = time.perf_counter()
        self.reference_importance = self.importance(trainer, model, reference)
        reference_time = time.perf_counter() - start
        self.forget_importance = self.importance(trainer, model, ReferenceSplit("forget"))
        forget_time = time.perf_counter() - start - reference_time
        outcome = self.policy.dampen(model, self.reference_importance, self.forget_importance, request)
        changed = int(outcome["parameters_changed"])
        total = sum(p.numel() for p in model.parameters())
        self.summary = {
            "policy": self.policy.name,
            **outcome,
            "variant": self.variant,
            "batch_size": self.batch_size,
            "devices": trainer.world_size,
            "parameters_changed": changed,
            "parameters_total": total,
            "fraction_changed": changed / max(total, 1),
            f"importance_{reference.split}_time_s": reference_time,
            "importance_forget_time_s": forget_time,
            "autocast": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else None,
            "channels_last": self.channels_last,
            "importance_cache": dict(self.cache_use) if self.cache is not None else "off",
        }

    def request(self, trainer: L.Trainer) -> DampeningRequest:
        """What the policy may use: the task, split sizes, training splits, and rank 0's say."""
        agree = (lambda choice: choice) if trainer.world_size == 1 else (
            lambda choice: trainer.strategy.broadcast(choice, src=0))
        return DampeningRequest.from_datamodule(
            trainer.datamodule, self.variant, self.batch_size, agree=agree, is_zero=is_rank_zero(),
            refresh_forget=lambda dampened: self.importances_on_all_ranks(trainer, dampened, "forget"),
            show_progress=trainer_shows_progress(trainer))

    # ------------------------------------------------------------------ shard -> accumulate -> reduce
    def importances_on_all_ranks(self, trainer: L.Trainer, model: torch.nn.Module, split: str,
                                 batches: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
        """Importance over ``split`` with this rank's batches, summed over ranks, divided by all batches.

        ``batches`` (positions within ``split``) replaces the plain cut into ``batch_size`` batches."""
        data = trainer.datamodule
        sampler = ShardedBatchSampler(len(data.indices(split)), self.batch_size, trainer.global_rank,
                                      trainer.world_size, batches)
        loader = progress(data.loader(split, batch_sampler=sampler), f"SSD importance over {split}",
                          trainer_shows_progress(trainer), total=len(sampler))
        sums, count = accumulate_importances(model, loader, self.variant, zero_importances(model),
                                             self.autocast_dtype, self.channels_last)
        total, batches = sum_over_ranks(trainer.strategy, sums, count)
        if batches == 0:
            raise ValueError(f"the {split} set is empty: no importance can be estimated")
        return {name: value / batches for name, value in total.items()}

    def sample_classes(self, trainer: L.Trainer, model: torch.nn.Module, split: str) -> torch.Tensor:
        """The class of every sample of ``split``, in loader order, for class-coherent batches.

        SSD uses labels anyway, so it groups by label. LFSSD must not read labels: it groups
        by the model's own predicted class, predicted with every rank's share of the batches
        and summed across ranks (one forward pass over ``split`` in all).
        """
        data = trainer.datamodule
        if grouped_by(self.variant) == "label":
            return torch.as_tensor(data.labels_of(split), dtype=torch.long)
        n = len(data.indices(split))
        sampler = ShardedBatchSampler(n, self.batch_size, trainer.global_rank, trainer.world_size)
        logits, _ = predict(model, data.loader(split, batch_sampler=sampler))
        device = next(model.parameters()).device
        mine = torch.zeros(n, device=device)  # class + 1 at this rank's positions, 0 elsewhere
        positions = torch.tensor([p for batch in sampler for p in batch], dtype=torch.long, device=device)
        if len(positions):
            mine[positions] = logits.argmax(1).float().to(device) + 1
        return (trainer.strategy.reduce(mine, reduce_op="sum") - 1).round().long().cpu()

    # ------------------------------------------------------------------ cache
    def importance(self, trainer: L.Trainer, model: torch.nn.Module,
                   reference: ReferenceSplit) -> dict[str, torch.Tensor]:
        """The importance over ``reference.split``: from the cache when it holds it, else computed (and stored).

        ``reference.by_class``: over class-coherent batches (:meth:`sample_classes`) instead of
        the plain cut; a separate cache entry, so the paper's imp_D is never replaced by it.
        """
        split = reference.split

        def compute() -> dict[str, torch.Tensor]:
            batches = None
            if reference.by_class:
                batches = class_coherent_batches(self.sample_classes(trainer, model, split), self.batch_size)
            return self.importances_on_all_ranks(trainer, model, split, batches)

        if self.cache is None:
            return compute()
        parts = None
        if is_rank_zero():
            if self._weights is None:
                self._weights = weights_digest(model)
            parts = importance_parts(self._weights, trainer.datamodule, split, self.variant, self.batch_size,
                                     self.autocast_dtype, self.channels_last)
            if parts is not None and reference.by_class:
                parts["batches"] = f"one class each: {grouped_by(self.variant)}"
        agreement = RankZeroAgreement(trainer.strategy, zero_importances(model)) if trainer.world_size > 1 else None
        value, use = self.cache.get_or_compute_agreed(parts, compute, agreement)
        self.cache_use[split] = use
        device = next(model.parameters()).device
        return {name: tensor.to(device) for name, tensor in value.items()}
