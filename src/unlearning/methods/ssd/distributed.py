"""What SSD needs from several devices: disjoint whole-batch shards and exact sums of importances.

Each rank takes a disjoint share of whole batches (rank r gets batches r, r+W, r+2W, ... of
the single-device batch list) and accumulates its sums locally; :func:`sum_over_ranks` adds
every rank's sums and batch counts in one flat collective. Dividing by the global batch
count then gives exactly the single-device importances, whatever the number of devices (up
to float summation order). The collectives are the Lightning strategy's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank ``rank`` of ``world`` gets batches ``rank, rank + world, ...`` of ``range(n)`` cut into batches.

    Unlike ``DistributedSampler`` it never pads with repeated samples, so the union of all
    ranks' batches is exactly the single-device batch list. ``batches`` replaces the plain
    cut with a given batch list (e.g. :func:`~unlearning.methods.ssd.core.class_coherent_batches`),
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


def flatten(tensors: dict[str, torch.Tensor], count: int) -> torch.Tensor:
    """All tensors and a count in one flat float tensor, so one collective moves them all."""
    device = next(iter(tensors.values())).device
    return torch.cat([value.reshape(-1) for value in tensors.values()] + [torch.tensor([float(count)], device=device)])


def unflatten(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The inverse of :func:`flatten`, shaped as ``like``."""
    out, offset = {}, 0
    for name, value in like.items():
        out[name] = flat[offset : offset + value.numel()].view_as(value)
        offset += value.numel()
    return out, int(round(flat[offset].item()))


def sum_over_ranks(strategy: Any, sums: dict[str, torch.Tensor], count: int) -> tuple[dict[str, torch.Tensor], int]:
    """Every rank's ``sums`` and ``count`` added up (one flat ``strategy.reduce``; a no-op on one device)."""
    total, batches = unflatten(strategy.reduce(flatten(sums, count), reduce_op="sum"), sums)
    return total, batches


class RankZeroAgreement:
    """How the ranks agree on one cache lookup that only rank 0 makes (see ``TensorCache.get_or_compute_agreed``).

    Rank 0 alone reads the cache (another job may be writing it at that moment), so the
    others follow its decision and, on a hit, receive its tensors: a sum in which every
    other rank adds zeros is exact, and reuses the flat collective.
    """

    def __init__(self, strategy: Any, like: dict[str, torch.Tensor]):
        self.strategy, self.like = strategy, like

    def decide(self, hit: bool, usable: bool) -> tuple[bool, bool]:
        """Rank 0's (hit, usable) on every rank."""
        return self.strategy.broadcast((hit, usable), src=0)

    def share(self, found: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Rank 0's cached tensors on every rank (``found`` is None except on rank 0)."""
        device = next(iter(self.like.values())).device
        source = {name: found[name].to(device) for name in self.like} if found is not None else self.like
        values, _ = sum_over_ranks(self.strategy, source, 0)
        return {name: value.clone() for name, value in values.items()}
