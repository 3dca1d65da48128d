"""NegGrad+ (Kurmanji et al., NeurIPS 2023, the SCRUB paper's strengthened gradient ascent).

Every step takes one Dr batch and one Df batch and minimises
``alpha * CE(Dr batch) - (1 - alpha) * CE(Df batch)`` (two forward passes, the model in
training mode). An epoch is one pass over Dr; Df is reused as often as that takes.

Reference code: Deep Unlearn's ``munl/unlearning/neggrad_plus.py``, adapted from SCRUB's
``small_scale_unlearning`` notebook (``zip(retain_loader, cycle(forget_loader))``). Its
defaults are ours: alpha 0.95, 10 epochs, SGD lr 0.01, momentum 0.9, weight decay 0,
batch 256 for both sets, no augmentation.

**Deviations**, and why:

- *Training mode.* Deep Unlearn calls ``model.eval()`` before its loop (batch-norm statistics
  frozen, dropout off), SCRUB's notebook trains in training mode. We follow the paper's own
  notebook (``method.train_mode: true``); ``method.train_mode=false`` is Deep Unlearn's setting.
- *How Df is paired with Dr.* The reference cycles a shuffled Df loader next to the Dr loader.
  Sequential phases cannot express "one batch of each per step", so a small dataset,
  :class:`ForgetPairs`, gives Dr sample ``i`` the Df sample at position ``i mod |Df|`` of a
  permutation of Df drawn from the run's seed and the epoch, and the usual
  :class:`~unlearning.methods.training.PhasedLoader` shuffles and shards those pairs (seeded by
  the run's seed and the epoch, split across DDP ranks like every other method). Each Df sample
  is therefore used ``floor`` or ``ceil`` of ``|Dr| / |Df|`` times per epoch, as with the
  reference's cycling; the difference is that one Df batch may hold a sample twice when Df is
  smaller than a batch (the reference then takes all of Df, each sample once, per step), which
  leaves the expected Df loss the same. The last step of an epoch pairs a short Dr batch with an
  equally short Df batch (the reference: a short Dr batch with a full Df batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import Phase, UnlearningModule, fit, seeded_generator
from unlearning.optim import optimizer_name
from unlearning.validate import boolean, positive_numbers


def _samples(dataset: Dataset, positions: Sequence[int]) -> list:
    """``dataset``'s samples at ``positions``, fetched as one batch when the dataset can (tensor-held images)."""
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(list(positions))
    return [dataset[int(p)] for p in positions]


class ForgetPairs(Dataset):
    """``(retain image, retain label, forget image, forget label)``: Dr sample ``i`` with Df sample ``order[i mod |Df|]``.

    ``order`` is a permutation of Df (seeded by the caller); the length is Dr's, so a shuffled
    pass over this dataset is a pass over Dr with Df cycled alongside.
    """

    def __init__(self, retain: Dataset, forget: Dataset, order: torch.Tensor):
        if len(forget) == 0:
            raise ValueError("NegGrad+ needs at least one forget sample")
        if sorted(order.tolist()) != list(range(len(forget))):
            raise ValueError("order must be a permutation of the forget set's positions")
        self.retain, self.forget, self.order = retain, forget, order.long()

    def __len__(self) -> int:
        return len(self.retain)

    def partner(self, position: int) -> int:
        """The Df position paired with Dr position ``position``."""
        return int(self.order[int(position) % len(self.order)])

    def __getitem__(self, position: int):
        return self.__getitems__([position])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[tuple]:
        retained = _samples(self.retain, positions)
        forgotten = _samples(self.forget, [self.partner(p) for p in positions])
        return [(r[0], r[1], f[0], f[1]) for r, f in zip(retained, forgotten, strict=True)]


class NegGradPlusModule(UnlearningModule):
    def __init__(self, model: nn.Module, forget, retain, batch_size: int, alpha: float, train_mode: bool,
                 **options):
        super().__init__(model, **options)
        self.model_training_mode = bool(train_mode)
        self.forget, self.retain, self.batch_size, self.alpha = forget, retain, int(batch_size), float(alpha)

    def pairs(self, epoch: int) -> ForgetPairs:
        generator = seeded_generator(self.seed, 10_007 + epoch)
        return ForgetPairs(self.retain, self.forget, torch.randperm(len(self.forget), generator=generator))

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("pairs", self.pairs(epoch), self.batch_size)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        retain_images, retain_labels, forget_images, forget_labels = batch[:4]
        retain_loss = F.cross_entropy(self.model(retain_images), retain_labels)
        forget_loss = F.cross_entropy(self.model(forget_images), forget_labels)
        return self.alpha * retain_loss - (1 - self.alpha) * forget_loss


class NegGradPlus(UnlearningMethod):
    name = "neggrad_plus"

    def __init__(self, alpha: float = 0.95, epochs: int = 10, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, batch_size: int = 256, optimizer: str = "sgd", train_mode: bool = True):
        positive_numbers("method.", epochs=epochs, lr=lr, batch_size=batch_size)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise UserError(f"method.alpha must be in [0, 1] (the weight of the Dr loss; 1 - alpha weighs the "
                            f"Df loss), got {alpha!r}.")
        self.alpha, self.epochs, self.batch_size = float(alpha), int(epochs), int(batch_size)
        self.train_mode = boolean(train_mode, "method.train_mode")
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        forget, retain = data.dataset("forget"), data.dataset("retain")
        module = NegGradPlusModule(model, forget, retain, self.batch_size, self.alpha, self.train_mode,
                                   seed=context.seed, num_workers=data.num_workers, **self.optimizer)
        fit(module, context, self.epochs)
        return {"alpha": self.alpha, "epochs": self.epochs, "batch_size": self.batch_size,
                "train_mode": self.train_mode, "forget_samples": len(forget), "retain_samples": len(retain),
                **self.optimizer}
