"""The tensor training path: per-batch augmentation, batch-norm recomputation and the per-step schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from unlearning.data.digits import build_digits
from unlearning.data.transforms import BatchTransform, build_transform
from unlearning.models.classifier import learning_rate_factor, recompute_batch_norm

MEAN, STD = (0.5,), (0.25,)


@pytest.fixture(scope="module")
def digits_uint8() -> torch.Tensor:
    """64 real digits as the tensor path holds them: uint8 (B, 1, 8, 8)."""
    pixels = build_digits().train_images.pixels(8)
    return pixels[:64]


def test_without_augmentation_it_is_to_tensor_and_normalize(digits_uint8):
    per_image = build_transform(MEAN, STD, native_size=8, image_size=8)
    expected = torch.stack([per_image(Image.fromarray(img[0].numpy())) for img in digits_uint8])
    batched = BatchTransform(MEAN, STD)(digits_uint8, augment=True)  # nothing to augment: normalise only
    assert torch.allclose(batched, expected, atol=1e-6)


def test_crop_shifts_each_image_by_its_own_offset_with_zero_fill(digits_uint8):
    torch.manual_seed(0)
    transform = BatchTransform(MEAN, STD, {"crop_padding": 4}, size=8)  # 1 px at 8 px
    assert transform.padding == 1
    out = transform.augment(digits_uint8)
    offsets = []
    for original, shifted in zip(digits_uint8, out, strict=True):
        padded = torch.nn.functional.pad(original, (1, 1, 1, 1))
        matches = [(dy, dx) for dy in range(3) for dx in range(3) if torch.equal(padded[:, dy:dy + 8, dx:dx + 8], shifted)]
        assert matches, "every output is a 1 px shift of its own image, zeros where no pixel"
        offsets.append(matches[0])
    assert len(set(offsets)) > 3, "offsets are drawn per image, not once per batch"
    torch.manual_seed(0)
    assert torch.equal(transform.augment(digits_uint8), out), "seeded draws repeat"


def test_flip_mirrors_about_half_the_images(digits_uint8):
    torch.manual_seed(1)
    out = BatchTransform(MEAN, STD, {"hflip": True}).augment(digits_uint8)
    flipped = [torch.equal(o, i.flip(-1)) and not torch.equal(o, i) for o, i in zip(out, digits_uint8, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, digits_uint8, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 16 <= sum(flipped) <= 48


def test_rotation_keeps_ink_near_the_centre_and_zero_angle_is_identity(digits_uint8):
    torch.manual_seed(2)
    rotated = BatchTransform(MEAN, STD, {"rotation": 15}).augment(digits_uint8)
    assert rotated.dtype == torch.uint8 and rotated.shape == digits_uint8.shape
    assert not torch.equal(rotated, digits_uint8)
    ink = digits_uint8.float().sum((1, 2, 3))
    assert ((rotated.float().sum((1, 2, 3)) - ink).abs() / ink).mean() < 0.2, "a small rotation moves, not erases, ink"
    tiny = BatchTransform(MEAN, STD, {"rotation": 1e-6}).augment(digits_uint8)
    assert torch.equal(tiny, digits_uint8)


def test_batch_norm_statistics_become_exact_averages():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 2))
    data = [(torch.randn(10, 3, 4, 4) * 2 + 1, torch.zeros(10)) for _ in range(5)]
    model.train()
    for images, _ in data[:2]:  # running averages of a few batches: not the data's statistics
        model(images)
    model.eval()
    recompute_batch_norm(model, data, torch.device("cpu"))
    everything = torch.cat([images for images, _ in data])
    bn = model[0]
    assert torch.allclose(bn.running_mean, everything.mean((0, 2, 3)), atol=1e-5)
    batch_vars = torch.stack([images.var((0, 2, 3), unbiased=True) for images, _ in data])
    assert torch.allclose(bn.running_var, batch_vars.mean(0), atol=1e-5), "cumulative mean of the batch variances"
    assert bn.momentum == 0.1 and not model.training, "momentum and mode restored"


def test_learning_rate_moves_every_step():
    factor = learning_rate_factor("cosine", warmup_epochs=1, epochs=3, steps_per_epoch=4)
    rates = [factor(step) for step in range(12)]
    assert rates[:5] == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0]), "a linear warm-up over the first epoch's steps"
    assert all(a > b for a, b in zip(rates[4:], rates[5:], strict=False)) and rates[-1] < 0.05
    steps = learning_rate_factor("multistep", 0, 3, 4, milestones=[1, 2], gamma=0.5)
    assert [steps(s) for s in (0, 3, 4, 7, 8)] == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    assert np.isfinite(learning_rate_factor("cosine", 2, 1, 1)(5)), "a run shorter than its warm-up still works"
