"""SSD as a Lightning Callback: importances on every device in parallel, then dampening.

Each rank takes a disjoint share of whole batches (rank r gets batches r, r+W, r+2W, ... of
the same sequential batch list), accumulates squared (or absolute) gradients locally on the
unwrapped model, and the sums and batch counts are summed across ranks with the strategy's
collective in one flat tensor. Dividing by the global batch count then gives exactly the
single-device importances, whatever the number of devices (up to float summation order).
Every rank then dampens identically, so the replicas stay in sync.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import Sampler

from unlearning.methods.ssd import accumulate_importances, check_hyperparameters, dampen, zero_importances


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank ``rank`` of ``world`` gets batches ``rank, rank + world, ...`` of ``range(n)`` cut into batches.

    Unlike ``DistributedSampler`` it never pads with repeated samples, so the union of all
    ranks' batches is exactly the single-device batch list.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world

    def _all_batches(self) -> list[list[int]]:
        return [list(range(start, min(start + self.batch_size, self.n))) for start in range(0, self.n, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank :: self.world]

    def __len__(self) -> int:
        total = -(-self.n // self.batch_size)
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
    ):
        check_hyperparameters(alpha, lambda_)
        self.alpha, self.lambda_, self.variant, self.batch_size = alpha, lambda_, variant, int(batch_size)
        self.cache = importance_cache
        self.summary: dict[str, Any] = {}
        self.full: dict[str, torch.Tensor] | None = None
        self.forget: dict[str, torch.Tensor] | None = None

    def importances_on_all_ranks(self, trainer: L.Trainer, model: torch.nn.Module, split: str) -> dict[str, torch.Tensor]:
        """Importance over ``split`` with this rank's batches, summed over ranks, divided by all batches."""
        data = trainer.datamodule
        sampler = ShardedBatchSampler(len(data.indices(split)), self.batch_size, trainer.global_rank, trainer.world_size)
        loader = data.loader(split, batch_sampler=sampler)
        sums, count = accumulate_importances(model, loader, self.variant, zero_importances(model))
        flat = trainer.strategy.reduce(_flatten(sums, count), reduce_op="sum")
        total, batches = _unflatten(flat, sums)
        if batches == 0:
            raise ValueError(f"the {split} set is empty: no importance can be estimated")
        return {name: value / batches for name, value in total.items()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        start = time.perf_counter()
        self.full = self._importance(trainer, model, "full")
        full_time = time.perf_counter() - start
        self.forget = self._importance(trainer, model, "forget")
        forget_time = time.perf_counter() - start - full_time
        self.alpha = self.select_alpha(trainer, self.full, self.forget)
        changed = dampen(model, self.full, self.forget, self.alpha, self.lambda_)
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
        }

    def select_alpha(self, trainer: L.Trainer, full: dict[str, torch.Tensor],
                     forget: dict[str, torch.Tensor]) -> float:
        """The selection weighting to dampen with: the configured alpha (ASSD overrides this)."""
        return self.alpha

    def _importance(self, trainer: L.Trainer, model: torch.nn.Module, split: str) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            return self.cache.get_or_compute(
                model, trainer.datamodule, split, self.variant, self.batch_size,
                lambda: self.importances_on_all_ranks(trainer, model, split),
            )
        return self.importances_on_all_ranks(trainer, model, split)
