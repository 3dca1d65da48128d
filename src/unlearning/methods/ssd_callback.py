"""SSD as a Lightning Callback: importances on every device in parallel, then dampening.

Each rank takes a disjoint share of whole batches (rank r gets batches r, r+W, r+2W, ... of
the same sequential batch list), accumulates squared (or absolute) gradients locally on the
unwrapped model, and the sums and batch counts are summed across ranks with the strategy's
collective in one flat tensor. Dividing by the global batch count then gives exactly the
single-device importances, whatever the number of devices (up to float summation order).
Every rank then dampens identically, so the replicas stay in sync.

With a :class:`~unlearning.cache.TensorCache`, each importance is looked up first under a
digest of exactly its inputs (:func:`importance_parts`). Under DDP, rank 0 alone decides:
it looks the entry up and tells the other ranks whether it found it; on a hit it sends
them its tensors (so every rank dampens with the same numbers even if another job is
writing the cache at that moment), on a miss all ranks compute and rank 0 writes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import Sampler

from unlearning.evaluation.predictions import predict
from unlearning.fingerprint import dataset_digest, split_digest, weights_digest
from unlearning.methods.ssd import (
    accumulate_importances,
    check_hyperparameters,
    class_coherent_batches,
    dampen,
    zero_importances,
)

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


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank ``rank`` of ``world`` gets batches ``rank, rank + world, ...`` of ``range(n)`` cut into batches.

    Unlike ``DistributedSampler`` it never pads with repeated samples, so the union of all
    ranks' batches is exactly the single-device batch list. ``batches`` replaces the plain
    cut with a given batch list (e.g. :func:`~unlearning.methods.ssd.class_coherent_batches`),
    sharded the same way.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1,
                 batches: Sequence[Sequence[int]] | None = None):
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world
        self.batches = None if batches is None else [list(batch) for batch in batches]

    def _all_batches(self) -> list[list[int]]:
        if self.batches is not None:
            return self.batches
        return [list(range(start, min(start + self.batch_size, self.n))) for start in range(0, self.n, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank :: self.world]

    def __len__(self) -> int:
        total = len(self.batches) if self.batches is not None else -(-self.n // self.batch_size)
        return len(range(self.rank, total, self.world))


def _flatten(sums: dict[str, torch.Tensor], count: int) -> torch.Tensor:
    device = next(iter(sums.values())).device
    return torch.cat([value.reshape(-1) for value in sums.values()] + [torch.tensor([float(count)], device=device)])


def _unflatten(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    out, offset = {}, 0
    for name, value in like.items():
        out[name] = flat[offset : offset + value.numel()].view_as(value)
        offset += value.numel()
    return out, int(round(flat[offset].item()))


class SSDCallback(L.Callback):
    """Computes imp_D and imp_Df across all devices at ``on_fit_start``, then dampens.

    Run it with ``trainer.fit(HoldWeights(model), datamodule=dm)`` and ``max_epochs=0``: the
    hook fires after the strategy has set up the processes and before any training, the
    same place Lightning's own weight-surgery callbacks act.
    """

    def __init__(
        self,
        alpha: float = 10.0,
        lambda_: float = 1.0,
        variant: str = "ssd",
        batch_size: int = 64,
        importance_cache: Any = None,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ):
        check_hyperparameters(alpha, lambda_)
        self.alpha, self.lambda_, self.variant, self.batch_size = alpha, lambda_, variant, int(batch_size)
        self.cache = importance_cache
        self.autocast_dtype, self.channels_last = autocast_dtype, bool(channels_last)
        self.cache_use: dict[str, str] = {}
        self._weights: str | None = None
        self.summary: dict[str, Any] = {}
        self.full: dict[str, torch.Tensor] | None = None
        self.forget: dict[str, torch.Tensor] | None = None

    def importances_on_all_ranks(self, trainer: L.Trainer, model: torch.nn.Module, split: str,
                                 batches: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
        """Importance over ``split`` with this rank's batches, summed over ranks, divided by all batches.

        ``batches`` (positions within ``split``) replaces the plain cut into ``batch_size`` batches."""
        data = trainer.datamodule
        sampler = ShardedBatchSampler(len(data.indices(split)), self.batch_size, trainer.global_rank,
                                      trainer.world_size, batches)
        loader = data.loader(split, batch_sampler=sampler)
        sums, count = accumulate_importances(model, loader, self.variant, zero_importances(model),
                                             self.autocast_dtype, self.channels_last)
        flat = trainer.strategy.reduce(_flatten(sums, count), reduce_op="sum")
        total, batches = _unflatten(flat, sums)
        if batches == 0:
            raise ValueError(f"the {split} set is empty: no importance can be estimated")
        return {name: value / batches for name, value in total.items()}

    @property
    def grouped_by(self) -> str:
        """What class-coherent batches group by: SSD reads labels anyway; LFSSD must not."""
        return "label" if self.variant == "ssd" else "predicted class"

    def sample_classes(self, trainer: L.Trainer, model: torch.nn.Module, split: str) -> torch.Tensor:
        """The class of every sample of ``split``, in loader order, for class-coherent batches.

        SSD uses labels anyway, so it groups by label. LFSSD must not read labels: it groups
        by the model's own predicted class, predicted with every rank's share of the batches
        and summed across ranks (one forward pass over ``split`` in all).
        """
        data = trainer.datamodule
        if self.grouped_by == "label":
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

    def full_importance(self, trainer: L.Trainer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """imp_D as the paper computes it: D in its index order, mixed batches (the automatic mode overrides)."""
        return self._importance(trainer, model, "full")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        start = time.perf_counter()
        self.cache_use, self._weights = {}, None
        self.full = self.full_importance(trainer, model)
        full_time = time.perf_counter() - start
        self.forget = self._importance(trainer, model, "forget")
        forget_time = time.perf_counter() - start - full_time
        changed = self.dampen_model(trainer, model)
        total = sum(p.numel() for p in model.parameters())
        self.summary = {
            "alpha": self.alpha,
            "lambda": self.lambda_,
            "variant": self.variant,
            "batch_size": self.batch_size,
            "devices": trainer.world_size,
            "parameters_changed": changed,
            "parameters_total": total,
            "fraction_changed": changed / max(total, 1),
            "importance_full_time_s": full_time,
            "importance_forget_time_s": forget_time,
            "autocast": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else None,
            "channels_last": self.channels_last,
            "importance_cache": dict(self.cache_use) if self.cache is not None else "off",
        }

    def dampen_model(self, trainer: L.Trainer, model: torch.nn.Module) -> int:
        """Dampen ``model`` with both importances known; return how many entries changed.

        SSD and ASSD dampen once with :meth:`select_alpha`'s alpha; the automatic mode
        (:class:`~unlearning.methods.ssd_auto_callback.AutoSSDCallback`) overrides this with
        its search, which needs the model and the data, not just one number.
        """
        self.alpha = self.select_alpha(trainer, self.full, self.forget)
        return dampen(model, self.full, self.forget, self.alpha, self.lambda_)

    def select_alpha(self, trainer: L.Trainer, full: dict[str, torch.Tensor],
                     forget: dict[str, torch.Tensor]) -> float:
        """The selection weighting to dampen with: the configured alpha (ASSD overrides this)."""
        return self.alpha

    def _importance(self, trainer: L.Trainer, model: torch.nn.Module, split: str,
                    by_class: bool = False) -> dict[str, torch.Tensor]:
        """The importance of ``split``: from the cache when it holds it, else computed (and stored).

        ``by_class``: over class-coherent batches (:meth:`sample_classes`) instead of the plain
        cut; a separate cache entry, so the paper's imp_D is never replaced by it.
        """

        def compute() -> dict[str, torch.Tensor]:
            batches = None
            if by_class:
                batches = class_coherent_batches(self.sample_classes(trainer, model, split), self.batch_size)
            return self.importances_on_all_ranks(trainer, model, split, batches)

        if self.cache is None:
            return compute()
        zero = trainer.is_global_zero
        parts = None
        if zero:
            if self._weights is None:
                self._weights = weights_digest(model)
            parts = importance_parts(self._weights, trainer.datamodule, split, self.variant, self.batch_size,
                                     self.autocast_dtype, self.channels_last)
            if parts is not None and by_class:
                parts["batches"] = f"one class each: {self.grouped_by}"
        claim = self.cache.claim(parts) if parts is not None else contextlib.nullcontext(None)
        with claim as found:  # rank 0 may wait here for another job computing the same entry
            usable = parts is not None
            if trainer.world_size > 1:
                hit, usable = trainer.strategy.broadcast((found is not None, usable), src=0)
                if hit:
                    found = self._from_rank_zero(trainer, model, found)
            if found is not None:
                self.cache_use[split] = "hit"
                device = next(model.parameters()).device
                return {name: value.to(device) for name, value in found.items()}
            value = compute()
            self.cache_use[split] = "computed" if usable else "computed (data cannot be fingerprinted)"
            if parts is not None:
                self.cache.put(parts, value)
            return value

    @staticmethod
    def _from_rank_zero(trainer: L.Trainer, model: torch.nn.Module,
                        found: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Rank 0's cached tensors on every rank: a sum where all other ranks add zeros is exact."""
        like = zero_importances(model)
        device = next(iter(like.values())).device
        source = {name: found[name].to(device) for name in like} if found is not None else like
        flat = trainer.strategy.reduce(_flatten(source, 0), reduce_op="sum")
        values, _ = _unflatten(flat, like)
        return {name: value.clone() for name, value in values.items()}
