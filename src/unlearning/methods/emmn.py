"""EMMN (Chundawat et al., "Zero-shot machine unlearning", IEEE TIFS 2023): error-maximising and
error-minimising noise, as the JiT paper's reference code runs it (jwf40/Zeroshot-Unlearning-At-Scale,
``forget_full_class_strategies.emmn``). Zero-shot: it reads no training sample at all, only which
class to forget (``data_needed = "class only"``).

1. Forgotten class: a batch of ``noise_batch_size`` noise images that *maximise* the model's loss
   on it: minimise ``-CE(f(noise), forgotten) + l2 * mean(sum(noise**2))`` (Adam 0.1, 25 steps).
2. Every kept class: a batch of noise images that *minimise* the loss on that class,
   ``CE(f(noise), class)`` (Adam 0.1, 30 steps): stand-ins for the retained data that is not
   available.
3. Impair: cross-entropy training (Adam 1e-4, 2 epochs, batch 4, shuffled) on all the noise
   images, each labelled with its class, repeated ``noise_batches`` (80) times. No repair step:
   there is no retained data to repair with.

**Deviations from the reference code**, which are defects there (docs/methods.md): (1) its noise
set took only 3 images of every noise batch (the loop ran over ``batch[0].size(0)``, the channel
count, as in its UNSIR); here all ``noise_batch_size`` images are used; (2) the noise is learnt
with the model in eval mode and gradients to the noise only (the reference left the model in
training mode, so learning the noise moved batch-norm statistics and the forgotten class's noise
was learnt under dropout); (3) the noise has the data's channel count (the reference always
drew 3 channels). The impair step trains in training mode, as the reference does. Full-class
forgetting only, as in the reference; other tasks are refused.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from unlearning.errors import UserError
from unlearning.methods.base import MethodContext
from unlearning.methods.finetune import CrossEntropyTraining
from unlearning.methods.training import fit, seeded_generator
from unlearning.methods.unsir import learn_noise
from unlearning.methods.zeroshot import ForgetOnly, ZeroShotMethod, method_device, one_forgotten_class
from unlearning.optim import build_optimizer
from unlearning.validate import positive_numbers, whole_number


def learn_class_noise(model: nn.Module, label: int, shape: tuple[int, ...], steps: int, lr: float,
                      generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Noise images (``shape``, normalised input space) that the model classifies as ``label`` (error-minimising)."""
    noise = torch.randn(shape, generator=generator).to(device).requires_grad_(True)
    optimizer = build_optimizer("adam", [noise], lr)
    labels = torch.full((shape[0],), int(label), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        for _ in range(int(steps)):
            with torch.enable_grad():
                loss = F.cross_entropy(model(noise), labels)
                (noise.grad,) = torch.autograd.grad(loss, [noise])
            optimizer.step()
    finally:
        model.train(was_training)
    return noise.detach()


class LabelledNoise(Dataset):
    """``repeats`` copies of a set of noise images, each with its own label."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, repeats: int):
        self.images, self.labels, self.repeats = images.cpu(), labels.cpu().long(), int(repeats)

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, index: int):
        position = index % len(self.images)
        return self.images[position], int(self.labels[position])


class EMMN(ZeroShotMethod):
    name = "emmn"
    supported_tasks = ("fullclass",)
    data_needed = "class only"

    def __init__(self, noise_batch_size: int = 4, noise_batches: int = 80, noise_lr: float = 0.1,
                 noise_l2: float = 0.1, forget_noise_steps: int = 25, retain_noise_steps: int = 30,
                 epochs: int = 2, batch_size: int = 4, lr: float = 1e-4):
        positive_numbers("method.", noise_batch_size=noise_batch_size, noise_batches=noise_batches,
                         noise_lr=noise_lr, batch_size=batch_size, lr=lr, epochs=epochs)
        if isinstance(noise_l2, bool) or not isinstance(noise_l2, int | float) or noise_l2 < 0:
            raise UserError(f"method.noise_l2 must be a number >= 0 (0 = no penalty), got {noise_l2!r}.")
        self.noise_batch_size = whole_number(noise_batch_size, "method.noise_batch_size")
        self.noise_batches = whole_number(noise_batches, "method.noise_batches")
        self.forget_noise_steps = whole_number(forget_noise_steps, "method.forget_noise_steps", minimum=0)
        self.retain_noise_steps = whole_number(retain_noise_steps, "method.retain_noise_steps", minimum=0)
        self.noise_lr, self.noise_l2 = float(noise_lr), float(noise_l2)
        self.epochs, self.batch_size = whole_number(epochs, "method.epochs"), whole_number(batch_size, "method.batch_size")
        self.lr = float(lr)

    def unlearn_zero_shot(self, model: nn.Module, request: ForgetOnly, context: MethodContext) -> dict[str, Any]:
        forgotten = one_forgotten_class(request, self.name)
        start = time.perf_counter()
        device = method_device(context)
        model.to(device)
        shape = (self.noise_batch_size, *request.image_shape)
        images = [learn_noise(model, forgotten, shape, self.forget_noise_steps, self.noise_lr, self.noise_l2,
                              seeded_generator(context.seed, 11))]
        labels = [forgotten]
        for kept in request.kept_classes:
            images.append(learn_class_noise(model, kept, shape, self.retain_noise_steps, self.noise_lr,
                                            seeded_generator(context.seed, 100 + kept), device))
            labels.append(kept)
        noise = torch.cat([i.cpu() for i in images])
        noise_labels = torch.tensor(labels).repeat_interleave(self.noise_batch_size)
        noise_time = time.perf_counter() - start
        dataset = LabelledNoise(noise, noise_labels, self.noise_batches)
        module = CrossEntropyTraining(model, dataset, self.batch_size, optimizer="adam", lr=self.lr,
                                      seed=context.seed, num_workers=request.num_workers)
        fit(module, context, self.epochs)
        return {"forgotten_label": forgotten, "kept_classes": len(request.kept_classes),
                "noise_images_per_class": self.noise_batch_size, "noise_samples": len(dataset),
                "forget_noise_steps": self.forget_noise_steps, "retain_noise_steps": self.retain_noise_steps,
                "noise_time_s": noise_time, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
