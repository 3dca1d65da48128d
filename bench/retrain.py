"""Section ``retrain``: a 2-epoch retrain on Dr, SSD's cheapest rival."""

from __future__ import annotations

import torch

from bench.timing import Clock, note, ratio
from bench.workload import Workload, trainer_factory, workload_data
from unlearning.models.classifier import ImageClassifier
from unlearning.models.resnet import build_resnet18


def bench_retrain(w: Workload, device: torch.device, out: dict) -> None:
    """A fixed 2-epoch retrain on Dr with the training recipe (SGD, augmentation): SSD's cheapest rival."""
    data, clock = workload_data(w, device), Clock(device)
    torch.manual_seed(w.seed)
    module = ImageClassifier(build_resnet18(w.classes, w.channels), num_classes=w.classes, lr=0.1)
    trainer = trainer_factory(device)(max_epochs=2, enable_checkpointing=False, limit_val_batches=0,
                                      num_sanity_val_steps=0)
    times: dict[str, float] = {}
    note("retrain: 2 epochs on Dr")
    with clock(times, "retrain_2_epochs"):
        trainer.fit(module, train_dataloaders=data.loader("retain", augment=True, shuffle=True,
                                                          batch_size=w.batch_size))
    out["retrain"] = {"epochs": 2, "images": 2 * len(data.indices("retain")), **times}
    if "ssd" in out:
        out["retrain"]["ssd_vs_retrain"] = ratio(out["ssd"]["ssd_s"], times["retrain_2_epochs_s"])
        out["retrain"]["ssd_vs_retrain_cpu"] = ratio(out["ssd"]["ssd_cpu_s"], times["retrain_2_epochs_cpu_s"])
