"""Selective Synaptic Dampening (SSD) and Loss-Free SSD (LFSSD), in plain PyTorch.

Usable without Lightning or Hydra::

    from unlearning.methods.ssd import importances, dampen

    reference = importances(model, full_train_loader)     # imp_D, the importance Df's is compared with
    forget = importances(model, forget_train_loader)      # imp_Df
    changed = dampen(model, reference, forget, alpha=10.0, lambda_=1.0)

Both follow the SSD paper's reference code exactly (Foster, Schoepf & Brintrup, AAAI 2024):
the importance of a parameter is the mean over mini-batches of the squared gradient of
the batch-mean cross-entropy (LFSSD: the mean absolute gradient of the squared L2 norm of
the logits, no labels). It is the squared *mini-batch* gradient, not a per-sample Fisher
diagonal, so the batch size and batch composition change the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: ssd: cross-entropy, grad^2 (the paper); lfssd: squared L2 norm of the logits, |grad| (label-free);
#: potion: the L2 norm of the logits *not* squared, |grad| (Potion's outlier-resistant importance,
#: the reference code's XALFSSD: a few large outputs weigh less than under the square).
VARIANTS = ("ssd", "lfssd", "potion")
#: Importances keyed by parameter name (``model.named_parameters()``).
Importances = Mapping[str, torch.Tensor]
#: Names accepted for the importance pass's autocast (``None``: float32 throughout, the default).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def autocast_dtype(name: str | None) -> torch.dtype | None:
    """``"bf16"`` -> ``torch.bfloat16``; ``None``/``"fp32"``/``"none"`` -> None (no autocast)."""
    if name is None or str(name).lower() in ("fp32", "float32", "none", "null", "false"):
        return None
    try:
        return AUTOCAST_DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown autocast {name!r}; valid: null (float32), bf16") from None


def importance_loss(logits: torch.Tensor, labels: torch.Tensor | None, variant: str) -> torch.Tensor:
    """Batch-mean cross-entropy (SSD), mean squared L2 norm of the logits (LFSSD) or mean L2 norm (Potion)."""
    if variant == "ssd":
        return F.cross_entropy(logits, labels)
    if variant == "lfssd":
        return torch.norm(logits, p="fro", dim=1).pow(2).mean()
    if variant == "potion":
        return torch.norm(logits, p="fro", dim=1).mean()
    raise ValueError(f"unknown SSD variant {variant!r}; valid: {', '.join(VARIANTS)}")


def zero_importances(model: nn.Module) -> dict[str, torch.Tensor]:
    """One zero tensor per named parameter, on the parameter's device, in float32."""
    return {name: torch.zeros_like(p, dtype=torch.float32) for name, p in model.named_parameters()}


def accumulate_importances(
    model: nn.Module,
    batches: Iterable,
    variant: str = "ssd",
    sums: dict[str, torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[dict[str, torch.Tensor], int]:
    """Add every batch's ``grad**2`` (SSD) or ``|grad|`` (LFSSD) to ``sums``; return sums and batch count.

    This is the un-normalised half of :func:`importances`, for callers that reduce sums
    and counts across devices before dividing. Gradients come from ``torch.autograd.grad``,
    so the model's ``.grad`` fields are never touched and no distributed gradient hook
    (DDP's averaging) fires. The model is put in eval mode and restored afterwards.

    The loop is as lean as a bare forward-backward pass: one fused ``_foreach`` update of
    all accumulators per batch, the batch count kept on the host, and no ``.item()`` or
    other device-to-host synchronisation, so a GPU never waits for Python. Options for
    GPUs: ``autocast_dtype=torch.bfloat16`` runs the forward pass in bfloat16 (gradients
    and accumulators stay float32; the selection changes slightly, see
    docs/performance.md), ``channels_last`` uses the NHWC layout that tensor cores prefer
    for convolutions (the model is converted for the pass and converted back).
    """
    sums = sums if sums is not None else zero_importances(model)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    targets = [sums[name] for name in names]
    device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    count = 0
    try:
        for batch in batches:
            images, labels = batch[0], batch[1] if len(batch) > 1 else None
            images = images.to(device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            if variant == "ssd":
                labels = labels.to(device, non_blocking=True)
            with torch.enable_grad(), torch.autocast(
                device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                loss = importance_loss(model(images), labels, variant)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            present = [(t, g.float()) for t, g in zip(targets, grads, strict=True) if g is not None]
            if present:
                accs, values = map(list, zip(*present, strict=True))
                if variant == "ssd":
                    torch._foreach_addcmul_(accs, values, values)
                else:
                    torch._foreach_add_(accs, torch._foreach_abs(values))
            count += 1
    finally:
        model.train(was_training)
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
    return sums, count


def importances(model: nn.Module, loader: Iterable, variant: str = "ssd", **options) -> dict[str, torch.Tensor]:
    """Per-parameter importance over ``loader``: the accumulated values divided by the number of batches.

    Keyed by ``model.named_parameters()`` names. Parameters that receive no gradient
    keep zero importance. Weights, train/eval mode and ``.grad`` are left as found.
    ``options`` (``autocast_dtype``, ``channels_last``) go to :func:`accumulate_importances`.
    """
    sums, count = accumulate_importances(model, loader, variant, **options)
    if count == 0:
        raise ValueError("importances() got an empty loader: there is nothing to estimate from")
    return {name: value / count for name, value in sums.items()}


def class_coherent_batches(classes: Sequence[int] | torch.Tensor, batch_size: int) -> list[list[int]]:
    """Positions ``0 .. len(classes) - 1`` cut into batches that each hold a single class.

    Classes come in ascending order, positions in their original order within a class, and
    each class's last batch may be short. A full-class forget set is loaded like this anyway
    (it holds one class); loading D the same way makes imp_D and imp_Df comparable: with
    mixed batches, the gradients of different classes partly cancel inside each batch mean,
    so imp_D comes out smaller than the same samples would give in batches of one class, and
    the ratio imp_Df / imp_D is inflated for entries that every class uses (see
    docs/auto_ssd.md, "Why the reference is class-coherent").
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    classes = torch.as_tensor(classes).reshape(-1)
    batches: list[list[int]] = []
    for value in classes.unique(sorted=True):
        positions = (classes == value).nonzero().squeeze(1).tolist()
        batches.extend(positions[start:start + batch_size] for start in range(0, len(positions), batch_size))
    return batches


def check_hyperparameters(alpha: float, lambda_: float) -> None:
    """alpha and lambda must be positive, finite numbers."""
    for label, value in (("alpha", alpha), ("lambda_", lambda_)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"SSD {label} must be a positive number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"SSD {label} must be a positive, finite number, got {value!r}")


def dampen(model: nn.Module, reference: Importances, forget: Importances, alpha: float, lambda_: float) -> int:
    """Dampen, in place, the parameters specialised to the forget set; return how many entries changed.

    For each parameter tensor the entries with ``forget > alpha * reference`` are selected and
    multiplied by ``min(lambda_ * reference / forget, 1)``; nothing else changes. ``reference``
    is the importance Df's is compared with (the paper: over all of D). Because importances are
    non-negative and ``alpha > 0``, a selected entry has ``forget > 0``, so no division by
    zero can write NaN or inf.
    """
    check_hyperparameters(alpha, lambda_)
    return apply_dampening(model, reference, forget, alpha, lambda_)


@torch.no_grad()
def apply_dampening(model: nn.Module, reference: Importances, forget: Importances, alpha: float,
                    lambda_: float) -> int:
    """:func:`dampen` without checking alpha and lambda, for callers that checked them once (policies, the search)."""
    changed: list[torch.Tensor] = []
    for name, param in model.named_parameters():
        if name not in reference or name not in forget:
            continue
        imp_reference = reference[name].to(param.device, torch.float32)
        imp_forget = forget[name].to(param.device, torch.float32)
        selected = imp_forget > alpha * imp_reference
        if param.is_contiguous():
            # Work on the selected entries only (usually a small fraction): a few passes over
            # the tensor instead of a dozen full-size temporaries.
            where = selected.reshape(-1).nonzero().squeeze(1)
            values = param.view(-1).index_select(0, where)
            factor = (lambda_ * imp_reference.reshape(-1).index_select(0, where)
                      / imp_forget.reshape(-1).index_select(0, where)).clamp(max=1.0)
            changed.append(((factor < 1) & (values != 0)).sum())
            param.view(-1).index_copy_(0, where, values * factor.to(param.dtype))
            continue
        safe_forget = torch.where(selected, imp_forget, torch.ones_like(imp_forget))
        factor = torch.where(selected, (lambda_ * imp_reference / safe_forget).clamp(max=1.0),
                             torch.ones_like(imp_forget))
        changed.append((selected & (factor < 1) & (param != 0)).sum())
        param.mul_(factor.to(param.dtype))
    return int(torch.stack(changed).sum().item()) if changed else 0


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter, for :func:`restore` (searches try dampenings and undo them)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def restore(model: nn.Module, saved: Mapping[str, torch.Tensor]) -> None:
    """Put the parameters of a :func:`snapshot` back, in place."""
    for name, param in model.named_parameters():
        param.copy_(saved[name])


def ssd(
    model: nn.Module,
    full_loader: Iterable,
    forget_loader: Iterable,
    alpha: float = 10.0,
    lambda_: float = 1.0,
    variant: str = "ssd",
) -> int:
    """Whole SSD/LFSSD in one call: both importances, then :func:`dampen`. Returns entries changed."""
    check_hyperparameters(alpha, lambda_)
    reference = importances(model, full_loader, variant)
    forget = importances(model, forget_loader, variant)
    return apply_dampening(model, reference, forget, alpha, lambda_)
