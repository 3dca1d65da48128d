"""The fixed workload: generated images (ResNet18 at 3x32x32 by default), the data module over them,
and a Lightning trainer and method context as ``method=ssd`` runs get them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from unlearning.cache import TensorCache
from unlearning.data.bundle import ArrayImages, DatasetBundle, ImageSource
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.splits import FullClassTask
from unlearning.methods.base import MethodContext


@dataclass
class Workload:
    n_full: int = 5000
    n_test: int = 1000
    classes: int = 10
    image_size: int = 32
    channels: int = 3
    batch_size: int = 64
    eval_batch_size: int = 512
    seed: int = 0


class GeneratedImages(ImageSource):
    """Image ``i`` drawn from a generator seeded with ``(seed, i)`` on access: nothing is held in memory."""

    def __init__(self, n: int, size: int, channels: int, seed: int):
        self.n, self.size, self.channels, self.seed = n, size, channels, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        from PIL import Image

        pixels = np.random.default_rng([self.seed, int(index)]).integers(0, 256, (self.size, self.size, self.channels),
                                                                       dtype=np.uint8)
        return Image.fromarray(pixels)

    def fingerprint(self) -> str:
        return f"generated:{self.n}:{self.size}:{self.channels}:{self.seed}"


def generated_bundle(w: Workload, lazy: bool = False) -> DatasetBundle:
    """Random images with balanced labels (``i % classes``): forgetting class 0 forgets 1/classes of D."""
    def images(n: int, seed: int) -> ImageSource:
        if lazy:
            return GeneratedImages(n, w.image_size, w.channels, seed)
        rng = np.random.default_rng(seed)
        return ArrayImages(rng.integers(0, 256, (n, w.image_size, w.image_size, w.channels), dtype=np.uint8))

    return DatasetBundle(
        name="generated", train_images=images(w.n_full, w.seed), test_images=images(w.n_test, w.seed + 1),
        train_fine=np.arange(w.n_full, dtype=np.int64) % w.classes,
        test_fine=np.arange(w.n_test, dtype=np.int64) % w.classes,
        fine_names=[f"c{i}" for i in range(w.classes)], channels=w.channels, native_size=w.image_size,
        mean=(0.5,) * w.channels, std=(0.25,) * w.channels,
    )


def workload_data(w: Workload, device: torch.device, lazy: bool = False, image_size: int | None = None,
                  ) -> UnlearningDataModule:
    bundle = generated_bundle(w, lazy)
    gpu = device.type == "cuda"
    data = UnlearningDataModule(
        builder=lambda: bundle, task=FullClassTask("c0"), image_size=image_size,
        batch_size=w.batch_size, eval_batch_size=w.eval_batch_size,
        # 2 shared cores: loading in the main process is fastest; a GPU needs workers and pinned memory
        num_workers=min(8, os.cpu_count() or 1) if gpu else 0, pin_memory=gpu,
    )
    data.setup()
    return data


def trainer_factory(device: torch.device) -> Callable[..., L.Trainer]:
    accelerator = "gpu" if device.type == "cuda" else "cpu"

    def make(**overrides: Any) -> L.Trainer:
        options = dict(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, precision="32-true")
        options.update(overrides)
        return L.Trainer(**options)

    return make


def context(model: nn.Module, device: torch.device, cache: TensorCache | None, fresh=None) -> MethodContext:
    return MethodContext(make_trainer=trainer_factory(device), fresh_model=fresh or (lambda: model),
                         original=model, task="fullclass", cache=cache)
