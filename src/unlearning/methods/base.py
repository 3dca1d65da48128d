"""What every unlearning method shares: its contract and the context it runs in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError

#: Every task a method can be asked for; poison and mislabel forget identified bad training samples.
TASKS = ("fullclass", "subclass", "random", "poison", "mislabel")


@dataclass
class MethodContext:
    """What a method may use besides the model and the data.

    ``make_trainer`` builds a Lightning Trainer with the run's accelerator, devices,
    strategy and logger (keyword arguments override, e.g. ``max_epochs``);
    ``fresh_model`` builds a randomly initialised model of the same architecture;
    ``original`` is a frozen copy of the model before unlearning; ``training`` is the
    dataset's training schedule (retrain uses it); ``cache`` is the run's
    :class:`~unlearning.cache.TensorCache` (None when ``cache=false``), where methods keep
    what a sweep can reuse (SSD: importances).
    """

    make_trainer: Callable[..., L.Trainer]
    fresh_model: Callable[[], nn.Module]
    original: nn.Module
    task: str
    seed: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    cache: Any = None


class UnlearningMethod(ABC):
    """An unlearning method changes ``model`` in place and returns what it chose and did.

    Subclasses set ``name`` and, when a task makes no sense for them, ``supported_tasks``.
    The returned dict goes into results.json under ``method_info``.
    """

    name: str = ""
    supported_tasks: tuple[str, ...] = TASKS
    #: The training data the method reads, as the report's "data needed" column shows it: "none",
    #: "Dr only", "Df only", "class only" (no samples, only which classes to forget) or "Df + Dr".
    data_needed: str = "Df + Dr"

    #: Why the other tasks are refused, in words for the error message.
    unsupported_reason: str = ""

    def check_task(self, task: str) -> None:
        if task not in self.supported_tasks:
            raise UserError(
                f"method={self.name} does not support task={task}; it supports: "
                f"{', '.join(self.supported_tasks)}." + (f" {self.unsupported_reason}" if self.unsupported_reason else "")
            )

    @abstractmethod
    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        """Make ``model`` forget ``data``'s forget set; return a summary of the choices made."""


class HoldWeights(L.LightningModule):
    """A LightningModule that only carries a model, for methods whose work is a callback."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images)

    def training_step(self, batch, batch_idx):  # pragma: no cover - never called (max_epochs=0)
        raise RuntimeError("HoldWeights does not train")

    def configure_optimizers(self):
        return None
