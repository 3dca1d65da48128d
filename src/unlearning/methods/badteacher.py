"""Bad teacher (Chundawat et al., AAAI 2023): a competent and an incompetent teacher.

The model (the student) is distilled, on Df, towards a randomly initialised model (the
incompetent teacher) and, on a random 30% of Dr, towards the original model (the competent
teacher): KL divergence between the student's and the chosen teacher's softmax at
temperature T. As the SSD reference code: Adam lr 1e-4, one epoch, batch 256 (128 for ViT,
set in ``conf/tuned/badteacher/vit.yaml``), T = 1, and ``F.kl_div``'s default reduction (the mean
over all N x C entries). The random teacher is ``context.fresh_model`` (seeded by the run's
seed; for ViT: the pretrained backbone with an untrained head, as in the reference).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Subset

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.methods.training import (
    Phase,
    Tagged,
    UnlearningModule,
    fit,
    seeded_generator,
)
from unlearning.optim import optimizer_name
from unlearning.validate import positive_numbers


class BadTeacherModule(UnlearningModule):
    def __init__(self, model, dataset, batch_size: int, temperature: float, **options):
        super().__init__(model, **options)
        self.dataset, self.batch_size, self.temperature = dataset, int(batch_size), float(temperature)

    def phases(self, epoch: int) -> list[Phase]:
        return [Phase("distil", self.dataset, self.batch_size)]

    def loss(self, phase: str, batch) -> torch.Tensor:
        images, _, is_forget = batch
        with torch.no_grad():
            competent = F.softmax(self.frozen["competent"](images) / self.temperature, dim=1)
            incompetent = F.softmax(self.frozen["incompetent"](images) / self.temperature, dim=1)
        flag = is_forget.to(competent.dtype).unsqueeze(1)
        target = flag * incompetent + (1 - flag) * competent
        log_student = F.log_softmax(self.model(images) / self.temperature, dim=1)
        return F.kl_div(log_student, target, reduction="sum") / log_student.numel()


class BadTeacher(UnlearningMethod):
    name = "badteacher"

    def __init__(self, epochs: int = 1, lr: float = 1e-4, batch_size: int = 256, retain_fraction: float = 0.3,
                 temperature: float = 1.0, optimizer: str = "adam", weight_decay: float = 0.0):
        positive_numbers("method.", epochs=epochs, lr=lr, batch_size=batch_size, retain_fraction=retain_fraction,
                         temperature=temperature)
        self.epochs, self.batch_size, self.retain_fraction = int(epochs), int(batch_size), float(retain_fraction)
        self.temperature = float(temperature)
        self.optimizer = dict(optimizer=optimizer_name(optimizer), lr=lr, weight_decay=weight_decay)

    def unlearn(self, model: nn.Module, data: UnlearningDataModule, context: MethodContext) -> dict[str, Any]:
        retain = data.dataset("retain")
        count = int(self.retain_fraction * len(retain))
        chosen = torch.randperm(len(retain), generator=seeded_generator(context.seed, 1))[:count]
        dataset = ConcatDataset([Tagged(data.dataset("forget"), 1), Tagged(Subset(retain, chosen.tolist()), 0)])
        module = BadTeacherModule(model, dataset, self.batch_size, self.temperature, seed=context.seed,
                                  num_workers=data.num_workers,
                                  frozen={"competent": context.original, "incompetent": context.fresh_model()},
                                  **self.optimizer)
        fit(module, context, self.epochs)
        return {"epochs": self.epochs, "batch_size": self.batch_size, "retain_samples": count,
                "temperature": self.temperature, **self.optimizer}
