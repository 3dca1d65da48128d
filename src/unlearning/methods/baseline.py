"""The original model, unchanged: the reference row of every comparison."""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod


class Baseline(UnlearningMethod):
    name = "baseline"
    data_needed = "none"

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        return {}
