"""Backbones, the LightningModule and checkpoint files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from unlearning.errors import UserError
from unlearning.models.checkpoints import check_compatible, load_checkpoint, load_into, save_checkpoint
from unlearning.models.classifier import ImageClassifier
from unlearning.models.resnet import build_resnet18
from unlearning.models.vit import build_vit


def test_resnet18_cifar_variant():
    model = build_resnet18(num_classes=20, in_channels=3)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert [layer[0].conv1.out_channels for layer in (model.layer1, model.layer2, model.layer3, model.layer4)] == [64, 128, 256, 512]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 20)
    grey = build_resnet18(num_classes=10, in_channels=1)
    assert grey(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_tiny_vit_forward_backward():
    torch.manual_seed(0)
    model = build_vit(num_classes=5, in_channels=1, pretrained=None, image_size=16,
                      config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 64, "patch_size": 4})
    images = torch.randn(3, 1, 16, 16)
    logits = model(images)
    assert logits.shape == (3, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert model.head.weight.grad is not None
    assert model.vit.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_pretrained_vit_offline_message(tmp_path):
    with pytest.raises(UserError, match="cannot load the ViT.*model.pretrained=PATH"):
        build_vit(num_classes=10, pretrained=str(tmp_path / "no-such-vit"))


def test_lightning_module_optimisers():
    module = ImageClassifier(build_resnet18(10, 1), num_classes=10, milestones=[2, 4], warmup_epochs=1)
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["optimizer"].defaults["momentum"] == 0.9 and config["optimizer"].defaults["weight_decay"] == 5e-4


@pytest.mark.parametrize("schedule", ["multistep", "cosine"])
def test_learning_rate_schedules(schedule):
    """Without a Trainer, one step per epoch: a linear warm-up from lr/10, then the milestones' steps or a cosine decay to zero."""
    module = ImageClassifier(build_resnet18(10, 1), num_classes=10, lr=0.05, milestones=[3, 4], gamma=0.2,
                             warmup_epochs=1, schedule=schedule, epochs=5)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if schedule == "multistep":
        assert rates == pytest.approx([0.005, 0.05, 0.05, 0.01, 0.002])
    else:  # cosine over the 4 epochs after the warm-up
        assert rates == pytest.approx([0.005, 0.05, 0.05 * (1 + math.cos(math.pi / 4)) / 2, 0.025,
                                       0.05 * (1 + math.cos(3 * math.pi / 4)) / 2])


def test_unknown_schedule_is_refused():
    with pytest.raises(UserError, match="schedule 'linear' is unknown: valid schedules are multistep, cosine"):
        ImageClassifier(build_resnet18(10, 1), num_classes=10, schedule="linear", epochs=5)


def test_checkpoint_roundtrip_and_checks(tmp_path):
    model = build_resnet18(10, 1).eval()
    save_checkpoint(tmp_path / "ck", model, {"dataset": "digits", "label_kind": "fine", "num_classes": 10, "model": "resnet18"})
    state, metadata = load_checkpoint(tmp_path / "ck")
    other = load_into(build_resnet18(10, 1).eval(), state, "ck")
    images = torch.randn(4, 1, 8, 8)
    assert torch.equal(model(images), other(images))
    assert json.loads((tmp_path / "ck" / "metadata.json").read_text())["num_classes"] == 10
    with pytest.raises(UserError, match="num_classes is 10 in the checkpoint but the task needs 5"):
        check_compatible(metadata, {"num_classes": 5}, "ck")
    with pytest.raises(UserError, match="does not fit the configured model"):
        load_into(build_resnet18(5, 1), state, "ck")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "ck")
