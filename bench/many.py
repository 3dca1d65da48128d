"""Section ``many``: K small models trained in one process at once (``torch.func`` + ``vmap``) vs one at a time.

Shadows, references and the N models of a score are many small independent trainings. Stacking
K models' parameters and running them as one batched computation (``torch.func.stack_module_state``,
``functional_call``, ``vmap``) can pay where one model leaves the device idle (a GPU with small
images). The measure: models x steps per second for K = 1, 2, 4 against K models trained one after
the other, same batches, same optimiser (SGD, momentum, weight decay). Batch norm cannot update its
running statistics in place under ``vmap``, so both sides use batch statistics only
(``torch.func.replace_all_batch_norm_modules_``): the comparison is of compute, not of the recipe.
The results of the two sides are compared too (largest absolute weight difference after the steps).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.timing import note


def _models(k: int, channels: int, classes: int) -> list[nn.Module]:
    from torch.func import replace_all_batch_norm_modules_

    from unlearning.models.resnet import build_resnet18

    models = []
    for index in range(k):
        torch.manual_seed(index)
        model = build_resnet18(classes, channels)
        replace_all_batch_norm_modules_(model)
        models.append(model.train())
    return models


def one_at_a_time(models: list[nn.Module], batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Seconds to train every model over every batch, model after model (SGD, momentum 0.9, wd 5e-4)."""
    start = time.perf_counter()
    for model in models:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        for images, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
    return time.perf_counter() - start


def stacked(models: list[nn.Module], batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, dict]:
    """Seconds to train all models at once: parameters stacked, one vmapped forward/backward per batch."""
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(models)
    params = {name: value.detach().requires_grad_(True) for name, value in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    optimizer = torch.optim.SGD(list(params.values()), lr=0.05, momentum=0.9, weight_decay=5e-4)
    k = len(models)

    def loss_of(p, b, images, labels):
        return F.cross_entropy(functional_call(base, (p, b), (images,)), labels)

    batched = vmap(loss_of, in_dims=(0, 0, None, None))
    start = time.perf_counter()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        batched(params, buffers, images, labels).sum().backward()  # each model's loss has its own gradient
        optimizer.step()
    del k
    return time.perf_counter() - start, params


def bench_many(out: dict[str, Any], ks: tuple[int, ...] = (1, 2, 4), steps: int = 8, size: int = 14,
               channels: int = 1, batch: int = 64) -> None:
    """``out["many"]``: models x steps per second, stacked against one at a time, for each K."""
    torch.manual_seed(0)
    batches = [(torch.randn(batch, channels, size, size), torch.randint(0, 10, (batch,))) for _ in range(steps)]
    rows = []
    for k in ks:
        note(f"many: {k} model(s), {steps} steps each, {size} px, batch {batch}")
        separate = _models(k, channels, 10)
        together = [copy.deepcopy(m) for m in separate]
        one_s = one_at_a_time(separate, batches)
        stacked_s, params = stacked(together, batches)
        gap = max(float((params[name][i] - dict(separate[i].named_parameters())[name]).detach().abs().max())
                  for i in range(k) for name in params)
        rows.append({"k": k, "one_at_a_time_s": one_s, "stacked_s": stacked_s,
                     "models_steps_per_s_one_at_a_time": k * steps / one_s,
                     "models_steps_per_s_stacked": k * steps / stacked_s, "stacked_vs_one": one_s / stacked_s,
                     "max_weight_difference": gap})
    out["many"] = {"steps": steps, "image_size": size, "batch_size": batch, "rows": rows}
