"""What the training-based methods share: "train this model on these batches with this loss".

A method subclasses :class:`UnlearningModule`, says which datasets an epoch runs through
(:meth:`UnlearningModule.phases`, in order, each with its own batch size) and what the loss
of one batch of a phase is (:meth:`UnlearningModule.loss`); :func:`fit` runs it through a
Lightning Trainer built by the run's ``context.make_trainer``, so the trainer config
(devices, DDP, precision, progress bar) applies unchanged.

Phases exist because several published methods run a whole pass over one set before a
pass over another within an epoch (SCRUB: max-steps on Df, then min-steps on Dr; SalUn:
random labels on Df, then Dr), which one shuffled loader cannot express. Each phase is
sharded across DDP ranks with a ``DistributedSampler`` (which pads, so every rank takes
the same number of steps in the same phase order) and shuffled with a generator seeded
from the run's seed and the epoch, so a rerun gives the same batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from unlearning.methods.base import MethodContext
from unlearning.optim import build_optimizer


@dataclass
class Phase:
    """One pass over ``dataset`` in batches of ``batch_size`` within an epoch."""

    name: str
    dataset: Dataset
    batch_size: int
    shuffle: bool = True


class PhasedLoader:
    """Yields ``(phase name, batch)`` for every batch of every phase, phase after phase.

    Kept on purpose instead of Lightning's ``CombinedLoader(mode="sequential")``, which iterates
    the same way: Lightning's fit loop refuses that mode ("`_FitLoop` does not support the
    `CombinedLoader(mode="sequential")` mode", lightning 2.6), it is for evaluation only; and
    the per-phase, per-epoch seeded shuffling and rank sharding below would still be ours.
    """

    def __init__(self, phases: Sequence[Phase], seed: int, epoch: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0):
        self.loaders = []
        for index, phase in enumerate(p for p in phases if len(p.dataset)):
            if world > 1:
                sampler = DistributedSampler(phase.dataset, num_replicas=world, rank=rank,
                                             shuffle=phase.shuffle, seed=seed + index)
                sampler.set_epoch(epoch)
            elif phase.shuffle:
                generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + index)
                sampler = RandomSampler(phase.dataset, generator=generator)
            else:
                sampler = SequentialSampler(phase.dataset)
            loader = DataLoader(phase.dataset, batch_size=int(phase.batch_size), sampler=sampler,
                                num_workers=num_workers)
            self.loaders.append((phase.name, loader))

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for name, loader in self.loaders:
            for batch in loader:
                yield name, batch

    def __len__(self) -> int:
        return sum(len(loader) for _, loader in self.loaders)


class UnlearningModule(L.LightningModule):
    """Trains ``model`` in place; ``frozen`` models (teachers) move with it but stay in eval mode.

    Subclasses implement :meth:`phases` and :meth:`loss`; the optimiser comes from the
    arguments (``optimizer`` is "sgd" or "adam").
    """

    def __init__(self, model: nn.Module, *, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, seed: int = 0, num_workers: int = 0,
                 frozen: dict[str, nn.Module] | None = None):
        super().__init__()
        self.model = model
        self.optimizer_name, self.lr, self.momentum, self.weight_decay = optimizer, lr, momentum, weight_decay
        self.seed, self.num_workers = int(seed), int(num_workers)
        self.frozen = nn.ModuleDict({name: m.eval().requires_grad_(False) for name, m in (frozen or {}).items()})

    # ------------------------------------------------------------ to override
    def phases(self, epoch: int) -> list[Phase]:
        raise NotImplementedError

    def loss(self, phase: str, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------- Lightning
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    #: The mode the trained model runs in (Lightning keeps whatever mode it finds).
    model_training_mode: bool = True

    def on_train_start(self) -> None:
        self.model.train(self.model_training_mode)
        self.frozen.eval()  # teachers never run in training mode (batch-norm statistics, dropout)

    def train_dataloader(self) -> PhasedLoader:
        trainer = self.trainer
        return PhasedLoader(self.phases(self.current_epoch), self.seed, self.current_epoch,
                            trainer.global_rank, trainer.world_size, self.num_workers)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        phase, payload = batch
        loss = self.loss(phase, payload)
        self.log(f"unlearn/{phase}_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        return build_optimizer(self.optimizer_name, self.model.parameters(), self.lr, self.momentum, self.weight_decay)


def fit(module: L.LightningModule, context: MethodContext, epochs: int, **trainer_options: Any) -> L.Trainer:
    """Train ``module`` for ``epochs`` epochs with the run's trainer settings; no checkpoints, and no
    validation unless ``val_dataloaders`` is given (a retrained model records its validation curve).

    Modules that serve their own data (:class:`UnlearningModule`) reload it every epoch, so
    a phase list may depend on the epoch; pass ``train_dataloaders=`` for a plain loader.
    """
    loaders = trainer_options.pop("train_dataloaders", None)
    validation = trainer_options.pop("val_dataloaders", None)
    options = dict(max_epochs=int(epochs), enable_checkpointing=False, num_sanity_val_steps=0,
                   limit_val_batches=0 if validation is None else 1.0, reload_dataloaders_every_n_epochs=1)
    if isinstance(module, UnlearningModule):
        options["use_distributed_sampler"] = False  # PhasedLoader shards by rank itself
    options.update(trainer_options)
    trainer = context.make_trainer(**options)
    with warnings.catch_warnings():
        # Frozen teachers sit in eval mode on purpose; Lightning would warn about them.
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
        trainer.fit(module, train_dataloaders=loaders, val_dataloaders=validation)
    module.model.eval()
    return trainer


# ------------------------------------------------------------------ datasets
class Relabelled(Dataset):
    """``dataset`` with its labels replaced by ``labels`` (one per sample)."""

    def __init__(self, dataset: Dataset, labels: torch.Tensor):
        if len(labels) != len(dataset):
            raise ValueError(f"{len(labels)} labels for {len(dataset)} samples")
        self.dataset, self.labels = dataset, torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][0], int(self.labels[index])


class Tagged(Dataset):
    """``(image, label, tag)``: the samples of ``dataset`` marked with a constant ``tag`` (e.g. 1 = forget)."""

    def __init__(self, dataset: Dataset, tag: int):
        self.dataset, self.tag = dataset, int(tag)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index][:2]
        return image, label, self.tag


def other_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """For each label, a label drawn uniformly from the *other* ``num_classes - 1`` classes."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    offsets = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + offsets) % num_classes


def seeded_generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 7919 + salt)
