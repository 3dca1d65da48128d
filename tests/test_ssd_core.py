"""SSD/LFSSD core against a straightforward reference, on real digits data."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearning.data.digits import build_digits
from unlearning.data.transforms import build_transform
from unlearning.methods.ssd import class_coherent_batches, dampen, importances, ssd
from unlearning.methods.ssd.distributed import ShardedBatchSampler


def small_cnn(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(8 * 8 * 8, num_classes),
    )


@pytest.fixture(scope="module")
def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    bundle = build_digits()
    transform = build_transform(bundle.mean, bundle.std, 8, 8)
    images = torch.stack([transform(bundle.train_images[i]) for i in range(300)])
    return images, torch.as_tensor(bundle.train_fine[:300])


def loader(images, labels, batch_size=32):
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


def reference_importances(model: nn.Module, data: DataLoader, variant: str) -> dict[str, torch.Tensor]:
    """The SSD reference code's loop: eval mode, zero grads, backward, accumulate, divide by batches."""
    model = copy.deepcopy(model).eval()
    acc = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for x, y in data:
        model.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y) if variant == "ssd" else torch.norm(out, p="fro", dim=1).pow(2).mean()
        loss.backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                acc[n] += p.grad.data.clone().pow(2) if variant == "ssd" else p.grad.data.clone().abs()
        batches += 1
    return {n: v / batches for n, v in acc.items()}


def reference_dampen(model: nn.Module, full, forget, alpha: float, lambda_: float) -> nn.Module:
    model = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            oimp, fimp = full[n], forget[n]
            locations = torch.where(fimp > oimp * alpha)
            weight = ((oimp * lambda_) / fimp)[locations]
            update = weight.clamp(max=1.0)
            p[locations] = p[locations] * update
    return model


@pytest.mark.parametrize("variant", ["ssd", "lfssd"])
def test_importances_match_reference(digits_tensors, variant):
    images, labels = digits_tensors
    model = small_cnn()
    ours = importances(model, loader(images, labels), variant)
    reference = reference_importances(model, loader(images, labels), variant)
    assert ours.keys() == reference.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-10)
    assert any(v.abs().sum() > 0 for v in ours.values())


def test_importances_leave_model_as_found(digits_tensors):
    images, labels = digits_tensors
    model = small_cnn().train()
    before = copy.deepcopy(model.state_dict())
    importances(model, loader(images, labels), "ssd")
    assert model.training, "train mode must be restored"
    assert all(p.grad is None for p in model.parameters()), ".grad must stay untouched"
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed (batch-norm stats must not update)"


def test_lfssd_ignores_labels(digits_tensors):
    images, labels = digits_tensors
    model = small_cnn()
    honest = importances(model, loader(images, labels), "lfssd")
    scrambled = importances(model, loader(images, torch.randint(0, 10, labels.shape)), "lfssd")
    for name in honest:
        torch.testing.assert_close(honest[name], scrambled[name])


def test_parameters_without_gradient_keep_zero_importance(digits_tensors):
    images, labels = digits_tensors
    model = small_cnn()
    model[0].weight.requires_grad_(False)
    result = importances(model, loader(images, labels), "ssd")
    assert torch.count_nonzero(result["0.weight"]) == 0
    assert torch.count_nonzero(result["5.weight"]) > 0


def test_batch_size_changes_importances(digits_tensors):
    """Mini-batch squared gradients, not per-sample Fisher: the batch size matters (documented)."""
    images, labels = digits_tensors
    model = small_cnn()
    a = importances(model, loader(images, labels, 16), "ssd")
    b = importances(model, loader(images, labels, 64), "ssd")
    assert not torch.allclose(a["5.weight"], b["5.weight"])


def test_class_coherent_batches_cover_every_sample_once_one_class_each(digits_tensors):
    _, labels = digits_tensors
    batches = class_coherent_batches(labels, 16)
    positions = [p for batch in batches for p in batch]
    assert sorted(positions) == list(range(len(labels)))
    assert all(0 < len(batch) <= 16 and len(set(labels[batch].tolist())) == 1 for batch in batches)
    # classes ascending, positions in order within a class; only each class's last batch is short
    firsts = [int(labels[batch[0]]) for batch in batches]
    assert firsts == sorted(firsts) and all(batch == sorted(batch) for batch in batches)
    per_class = torch.bincount(labels)
    assert len(batches) == sum(-(-int(n) // 16) for n in per_class if n > 0)
    with pytest.raises(ValueError, match="batch_size"):
        class_coherent_batches(labels, 0)


def test_class_coherent_batches_shard_across_ranks_without_loss_or_repeats(digits_tensors):
    _, labels = digits_tensors
    batches = class_coherent_batches(labels, 32)
    shards = [list(ShardedBatchSampler(len(labels), 32, rank, 3, batches)) for rank in range(3)]
    assert [len(ShardedBatchSampler(len(labels), 32, rank, 3, batches)) for rank in range(3)] == list(map(len, shards))
    assert sorted(map(tuple, (b for shard in shards for b in shard))) == sorted(map(tuple, batches))


@pytest.mark.parametrize("variant", ["ssd", "lfssd"])
def test_class_coherent_imp_d_is_larger_where_mixed_batches_cancel(digits_tensors, variant):
    """Why the automatic mode uses it: the same samples give a larger imp_D in batches of one class,
    because the classes' gradients no longer cancel inside a batch mean (every tensor here)."""
    images, labels = digits_tensors
    model = small_cnn()
    mixed = importances(model, loader(images, labels, 32), variant)
    batches = class_coherent_batches(labels, 32)
    coherent = importances(model, [(images[b], labels[b]) for b in batches], variant)
    for name, value in mixed.items():
        assert coherent[name].sum() > 1.1 * value.sum(), name


@pytest.mark.parametrize("alpha,lambda_", [(10.0, 1.0), (1.0, 0.5), (0.5, 2.0)])
def test_dampen_matches_reference(digits_tensors, alpha, lambda_):
    images, labels = digits_tensors
    model = small_cnn()
    full = importances(model, loader(images, labels), "ssd")
    forget_mask = labels == 3
    forget = importances(model, loader(images[forget_mask], labels[forget_mask]), "ssd")
    expected = reference_dampen(model, full, forget, alpha, lambda_)
    before = copy.deepcopy(model.state_dict())
    changed = dampen(model, full, forget, alpha, lambda_)
    assert changed > 0
    actual_changed = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected.state_dict()[name], rtol=0, atol=0)
        actual_changed += int((value != before[name]).sum())
    assert changed == actual_changed


def test_dampen_changes_only_selected_entries(digits_tensors):
    images, labels = digits_tensors
    model = small_cnn()
    full = importances(model, loader(images, labels), "ssd")
    forget_mask = labels == 7
    forget = importances(model, loader(images[forget_mask], labels[forget_mask]), "ssd")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dampen(model, full, forget, 10.0, 1.0)
    for name, param in model.named_parameters():
        selected = forget[name] > 10.0 * full[name]
        assert torch.equal(param[~selected], before[name][~selected])
        assert torch.all(param[selected].abs() <= before[name][selected].abs())


def test_dampen_with_zero_importances_writes_no_nan():
    model = small_cnn()
    zeros = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    before = copy.deepcopy(model.state_dict())
    # forget > 0 where full == 0: the factor is min(0 / f, 1) = 0, never inf or NaN
    forget = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    assert dampen(model, zeros, zeros, 10.0, 1.0) == 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    dampen(model, zeros, forget, 10.0, 1.0)
    for param in model.parameters():
        assert torch.isfinite(param).all()
        assert torch.count_nonzero(param) == 0


@pytest.mark.parametrize("alpha,lambda_", [(0.0, 1.0), (-1.0, 1.0), (10.0, 0.0), (10.0, -2.0),
                                           (math.nan, 1.0), (10.0, math.inf), ("10", 1.0), (True, 1.0)])
def test_dampen_rejects_bad_hyperparameters(alpha, lambda_):
    model = small_cnn()
    zeros = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="alpha|lambda"):
        dampen(model, zeros, zeros, alpha, lambda_)


def test_ssd_one_call_equals_two_steps(digits_tensors):
    images, labels = digits_tensors
    mask = labels == 2
    a, b = small_cnn(), small_cnn()
    ssd(a, loader(images, labels), loader(images[mask], labels[mask]), alpha=5.0, lambda_=1.0)
    full = importances(b, loader(images, labels))
    forget = importances(b, loader(images[mask], labels[mask]))
    dampen(b, full, forget, 5.0, 1.0)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
