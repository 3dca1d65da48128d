"""Zero-shot unlearning: methods that never read the retained training data (Dr).

A zero-shot method is handed a :class:`ForgetOnly` request instead of the data module:
the forget set Df, which classes it belongs to and which are kept, and the shape of an
input. The data module (which can serve Dr, D and the test sets) never reaches the method:
:meth:`ZeroShotMethod.unlearn` builds the request with :func:`forget_only`, which reads only
the forget split, and calls :meth:`ZeroShotMethod.unlearn_zero_shot` with it. So a zero-shot
method cannot read Dr by accident, and ``tests/test_zeroshot.py`` checks that with a data
module whose every other split raises.

Which methods qualify (docs/zeroshot.md): JiT uses the Df images ("Df only"); GKT and EMMN
use no training sample at all, only which classes to forget ("class only"). The
:class:`~unlearning.methods.base.MethodContext` a method also receives holds no data (a
Trainer factory, a fresh model factory, the frozen original, the cache).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.errors import UserError
from unlearning.methods.base import MethodContext, UnlearningMethod


@dataclass(frozen=True)
class ForgetOnly:
    """All that a zero-shot method may know about the data: Df and the label space, never Dr."""

    #: Df: ``(image, label)`` pairs, transformed as for evaluation (no augmentation).
    forget: Dataset
    num_classes: int
    #: The labels (of the model's label kind) Df carries; for full-class forgetting, the class.
    forget_classes: tuple[int, ...]
    channels: int
    input_size: int
    task: str
    num_workers: int = 0

    @property
    def kept_classes(self) -> tuple[int, ...]:
        """The classes the model must keep: every class Df does not carry."""
        return tuple(c for c in range(self.num_classes) if c not in self.forget_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.input_size, self.input_size)


def forget_only(data: UnlearningDataModule, task: str) -> ForgetOnly:
    """The request a zero-shot method receives; reads the forget split and the label space only."""
    labels = np.unique(np.asarray(data.labels_of("forget")))
    return ForgetOnly(forget=data.dataset("forget"), num_classes=int(data.num_classes),
                      forget_classes=tuple(int(c) for c in labels), channels=int(data.channels),
                      input_size=int(data.input_size), task=str(task), num_workers=int(data.num_workers))


class ZeroShotMethod(UnlearningMethod):
    """A method that sees only the model and Df (:class:`ForgetOnly`); subclasses implement
    :meth:`unlearn_zero_shot` and must not override :meth:`unlearn`."""

    data_needed = "Df only"

    @final
    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        return self.unlearn_zero_shot(model, forget_only(data, context.task), context)

    @abstractmethod
    def unlearn_zero_shot(self, model: nn.Module, request: ForgetOnly, context: MethodContext) -> dict[str, Any]:
        """Make ``model`` forget the request's Df (in place); return a summary of the choices made."""


def one_forgotten_class(request: ForgetOnly, method: str) -> int:
    """The single class a full-class method forgets; a clear refusal otherwise."""
    if len(request.forget_classes) != 1 or not request.kept_classes:
        raise UserError(f"method={method} forgets one whole class and keeps the others; this forget set carries "
                        f"labels {list(request.forget_classes)} of {request.num_classes} classes.")
    return request.forget_classes[0]


def method_device(context: MethodContext) -> torch.device:
    """The device the run's trainer would use (plain-PyTorch loops run there, on one device)."""
    return context.make_trainer(max_epochs=0).strategy.root_device
