"""GKT, Gated Knowledge Transfer (Chundawat et al., "Zero-shot machine unlearning", IEEE TIFS 2023),
as the JiT paper's reference code runs it (jwf40/Zeroshot-Unlearning-At-Scale, ``gkt.py`` and
``forget_full_class_strategies.gkt``). Zero-shot: it reads no training sample, only which classes
to keep (``data_needed = "class only"``).

A generator learns to produce pseudo-images on which a student disagrees with the original model
(the teacher); the student learns to agree with the teacher on them, by KL divergence on the
outputs plus attention transfer on intermediate activations. The **gate**: a pseudo-image reaches
either step only when the teacher gives the forgotten class a probability of at most
``threshold`` (0.01), so the student learns the kept classes only and never the forgotten one.
The student then replaces the model's weights.

One *pseudo-batch* is ``generator_steps`` (2) generator steps then ``student_steps`` (15) student
steps on pseudo-images from one latent batch of ``batch_size`` (128) vectors (z of 128 dims);
the reference runs 1000 pseudo-batches (ViT: 101, batch 8, 1 + 5 steps: ``conf/tuned/gkt/vit.yaml``).
Student: the original model with every ``Conv2d`` weight re-initialised (Xavier uniform), the
rest kept, as the reference builds it; SGD 0.01 momentum 0.9 under a one-cycle schedule (peak
0.1), gradient norm clipped at 5. Generator: the reference's (linear to 4x4 of the output size,
two transposed convolutions with batch norm, a 3x3 convolution and batch norm), SGD 0.01 momentum
0.9, clipped at 5. Losses: generator ``-KL(teacher || student)``, student ``KL + beta * sum of
attention differences`` (beta 5, temperature 1), with ``F.kl_div``'s mean over all N x C entries,
as the reference.

Attention points (where activations are compared): every ``Conv2d`` and every ``nn.Linear``
except the output layer, the reference's choice for its VGG; for a transformers ViT, the encoder
layers' outputs, the reference's choice for its ViT.

The teacher runs in training mode by default (``teacher_mode: train``), as in the reference, which
never calls ``eval()``: its batch norm normalises each pseudo-batch with that batch's own
statistics (and VGG's dropout is on). It is a private copy, so the running statistics that
training mode updates never reach the original model the run evaluates. ``teacher_mode: eval``
uses the running statistics of the real training data instead; on the 8 px digits ResNet18 an
eval-mode teacher calls 53 % of the generator's first images "3" (16 % pass the gate, against
67 % in training mode).

**Deviations from the reference code**, which are defects there (docs/methods.md): (1) a draw in which the gate lets no image through is counted, and after
``max_empty_draws`` (1000) consecutive ones the method stops and says so in ``method_info``
(the reference then tried to reload generator checkpoints it had never saved, printing the
exception, and broke out after 50 more); (2) the generator's last convolution is 3x3 for every
channel count (the reference's 1-channel branch used a 7x7 kernel with padding 1, which
shrinks the image by 4 pixels); (3) the KL divergence takes the teacher's log-probabilities:
the reference's probability-space ``F.kl_div`` has a NaN gradient where the teacher's softmax is
exactly 0, which on the 99 % digits model made the generator's weights NaN at its first step, so
that every later image was NaN and no draw passed the gate. Full-class forgetting only, as in the reference.
Runs as a plain PyTorch loop on the trainer's device (one device; under DDP every rank computes
the same student from the same seed).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unlearning.errors import UserError
from unlearning.evaluation.predictions import feature_layer
from unlearning.methods.base import MethodContext
from unlearning.methods.zeroshot import ForgetOnly, ZeroShotMethod, method_device, one_forgotten_class
from unlearning.validate import one_of, positive_numbers, whole_number

log = logging.getLogger(__name__)


class Generator(nn.Module):
    """z (``z_dim``) -> image (``channels`` x ``size`` x ``size``); ``size`` must be a multiple of 4."""

    def __init__(self, z_dim: int, size: int, channels: int):
        super().__init__()
        if size % 4:
            raise UserError(f"method=gkt's generator makes images whose side is a multiple of 4; the model sees "
                            f"{size} px. Set model.image_size (or dataset.image_size) to a multiple of 4.")
        inner, start = z_dim // 2, size // 4
        self.shape = (inner, start, start)
        self.linear = nn.Linear(z_dim, inner * start * start)
        self.layers = nn.Sequential(
            nn.BatchNorm2d(inner),
            nn.ConvTranspose2d(inner, inner, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(inner, inner // 2, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(inner // 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(inner // 2, channels, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(channels, affine=True),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(F.relu(self.linear(z)).view(-1, *self.shape))


def attention_map(activation: torch.Tensor) -> torch.Tensor:
    """Attention transfer's map (Zagoruyko & Komodakis): mean square over dim 1, flattened, L2-normalised."""
    return F.normalize(activation.pow(2).mean(1).reshape(activation.size(0), -1))


def attention_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Sum over attention points of the mean squared difference of the two maps."""
    return sum(((attention_map(s) - attention_map(t)).pow(2).mean() for s, t in zip(student, teacher, strict=True)),
               start=student[0].new_zeros(()) if student else torch.zeros(()))


def divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) with ``F.kl_div``'s elementwise mean (the reference's scale).

    The teacher's distribution is given as log-probabilities (``log_target=True``): the same value,
    but where a confident teacher's softmax underflows to exactly 0, the reference's
    probability-space form has a NaN gradient (``xlogy``'s at 0), which the generator step
    back-propagates into the generator's weights.
    """
    pointwise = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                         F.log_softmax(teacher_logits / temperature, dim=1), reduction="none", log_target=True)
    return pointwise.mean()  # = reduction="mean" (which torch warns about), the reference's scale


def attention_points(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs attention transfer compares (see the module docstring)."""
    encoder = getattr(getattr(model, "vit", None), "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):
        return list(encoder.layer)
    head = feature_layer(model)
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) or (isinstance(m, nn.Linear) and m is not head)]


@contextmanager
def recording(modules: list[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Collects each module's output (the first element of a tuple) during forward passes."""
    outputs: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        outputs.append(output[0] if isinstance(output, tuple) else output)

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def forward_with_attention(model: nn.Module, points: list[nn.Module], images: torch.Tensor):
    with recording(points) as outputs:
        logits = model(images)
    return logits, list(outputs)


def reinitialise_convolutions(model: nn.Module, generator: torch.Generator) -> None:
    """Xavier-uniform every ``Conv2d`` weight (the reference's student), from a seeded generator."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight
            fan_in = weight.size(1) * weight[0][0].numel()
            fan_out = weight.size(0) * weight[0][0].numel()
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            with torch.no_grad():
                weight.copy_((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound)


class GKT(ZeroShotMethod):
    name = "gkt"
    supported_tasks = ("fullclass",)
    data_needed = "class only"

    def __init__(self, pseudo_batches: int = 1000, batch_size: int = 128, generator_steps: int = 2,
                 student_steps: int = 15, z_dim: int = 128, threshold: float = 0.01, temperature: float = 1.0,
                 attention_beta: float = 5.0, student_lr: float = 0.01, student_max_lr: float = 0.1,
                 generator_lr: float = 0.01, momentum: float = 0.9, clip: float = 5.0,
                 max_empty_draws: int = 1000, student_init: str = "convolutions", teacher_mode: str = "train"):
        positive_numbers("method.", threshold=threshold, temperature=temperature, student_lr=student_lr,
                         student_max_lr=student_max_lr, generator_lr=generator_lr, clip=clip)
        if not isinstance(attention_beta, int | float) or isinstance(attention_beta, bool) or attention_beta < 0:
            raise UserError(f"method.attention_beta must be a number >= 0 (0 = no attention transfer), got "
                            f"{attention_beta!r}.")
        if not isinstance(momentum, int | float) or isinstance(momentum, bool) or not 0 <= momentum < 1:
            raise UserError(f"method.momentum must be a number in [0, 1), got {momentum!r}.")
        if not threshold < 1:
            raise UserError(f"method.threshold is the teacher's largest probability of the forgotten class that "
                            f"lets a pseudo-image through; it must be below 1, got {threshold!r}.")
        self.pseudo_batches = whole_number(pseudo_batches, "method.pseudo_batches")
        self.batch_size = whole_number(batch_size, "method.batch_size")
        self.generator_steps = whole_number(generator_steps, "method.generator_steps", minimum=0)
        self.student_steps = whole_number(student_steps, "method.student_steps")
        self.z_dim = whole_number(z_dim, "method.z_dim", minimum=4)
        self.max_empty_draws = whole_number(max_empty_draws, "method.max_empty_draws")
        self.student_init = one_of(student_init, "method.student_init", ("convolutions", "fresh"),
                                   "(convolutions: the reference's student, the original with its Conv2d weights "
                                   "re-initialised; fresh: a randomly initialised model, as the GKT paper).")
        self.teacher_mode = one_of(teacher_mode, "method.teacher_mode", ("train", "eval"),
                                   "(train: the reference, batch statistics of each pseudo-batch; eval: the running "
                                   "statistics of the training data).")
        self.threshold, self.temperature, self.beta = float(threshold), float(temperature), float(attention_beta)
        self.student_lr, self.student_max_lr, self.generator_lr = float(student_lr), float(student_max_lr), float(generator_lr)
        self.momentum, self.clip = float(momentum), float(clip)

    def gate(self, teacher_logits: torch.Tensor, forgotten: int) -> torch.Tensor:
        """True where the teacher's probability of the forgotten class is at most ``threshold``."""
        return torch.softmax(teacher_logits.detach(), dim=1)[:, forgotten] <= self.threshold

    def unlearn_zero_shot(self, model: nn.Module, request: ForgetOnly, context: MethodContext) -> dict[str, Any]:
        forgotten = one_forgotten_class(request, self.name)
        device = method_device(context)
        seeds = torch.Generator().manual_seed(int(context.seed) * 7919 + 23)
        torch.manual_seed(int(context.seed) * 7919 + 29)  # generator init, dropout, latent draws: reproducible

        # a private copy: training mode updates batch-norm running statistics, which the evaluated original must keep
        teacher = copy.deepcopy(context.original).to(device).train(self.teacher_mode == "train").requires_grad_(False)
        if self.student_init == "fresh":
            student = context.fresh_model().to(device)
        else:
            student = model
            reinitialise_convolutions(student, seeds)
        student.to(device).train().requires_grad_(True)
        generator = Generator(self.z_dim, request.input_size, request.channels).to(device).train()
        teacher_points, student_points = attention_points(teacher), attention_points(student)

        student_opt = torch.optim.SGD(student.parameters(), lr=self.student_lr, momentum=self.momentum)
        generator_opt = torch.optim.SGD(generator.parameters(), lr=self.generator_lr, momentum=self.momentum)
        schedule = torch.optim.lr_scheduler.OneCycleLR(student_opt, max_lr=self.student_max_lr,
                                                       total_steps=self.pseudo_batches * self.student_steps)
        cycle = self.generator_steps + self.student_steps
        done, step, empty, empty_total, kept_total, drawn_total = 0, 0, 0, 0, 0, 0
        stopped_early = False
        z = torch.randn(self.batch_size, self.z_dim, device=device)
        draws_of_z = 0
        start = time.perf_counter()
        while done < self.pseudo_batches:
            if draws_of_z == cycle:  # a new latent batch every pseudo-batch's worth of draws, as the reference
                z, draws_of_z = torch.randn(self.batch_size, self.z_dim, device=device), 0
            images = generator(z)
            draws_of_z += 1
            with torch.no_grad():
                passed = self.gate(teacher(images), forgotten)
            drawn_total += len(images)
            if not bool(passed.any()):
                empty, empty_total = empty + 1, empty_total + 1
                if empty >= self.max_empty_draws:
                    stopped_early = True
                    log.warning("gkt: the gate let no pseudo-image through in %d consecutive draws; stopping after "
                                "%d of %d pseudo-batches", empty, done, self.pseudo_batches)
                    break
                continue
            empty = 0
            images = images[passed]
            kept_total += len(images)
            if step % cycle < self.generator_steps:
                student_logits = student(images)
                teacher_logits = teacher(images)
                loss = -divergence(student_logits, teacher_logits, self.temperature)
                generator_opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(generator.parameters(), self.clip)
                generator_opt.step()
            else:
                images = images.detach()
                with torch.no_grad():
                    teacher_logits, teacher_acts = forward_with_attention(teacher, teacher_points, images)
                student_logits, student_acts = forward_with_attention(student, student_points, images)
                loss = divergence(student_logits, teacher_logits, self.temperature)
                if self.beta > 0:
                    loss = loss + self.beta * attention_loss(student_acts, teacher_acts)
                student_opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(student.parameters(), self.clip)
                student_opt.step()
                schedule.step()
            if (step + 1) % cycle == 0:
                done += 1
            step += 1
        if student is not model:
            model.load_state_dict(student.state_dict())
        model.eval().requires_grad_(True)
        return {"forgotten_label": forgotten, "kept_classes": len(request.kept_classes),
                "pseudo_batches": done, "pseudo_batches_asked": self.pseudo_batches, "stopped_early": stopped_early,
                "batch_size": self.batch_size, "generator_steps": self.generator_steps,
                "student_steps": self.student_steps, "threshold": self.threshold, "attention_beta": self.beta,
                "attention_points": len(student_points), "student_init": self.student_init,
                "teacher_mode": self.teacher_mode,
                "gate_pass_rate": kept_total / drawn_total if drawn_total else 0.0,
                "empty_draws": empty_total, "loop_time_s": time.perf_counter() - start}
