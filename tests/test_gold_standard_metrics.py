"""The gold-standard figures on known answers: Tug-of-War, JS divergence, the attack's features and AUC, the probe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearning.evaluation.against_reference import js_divergence, mean_js, relative_to_reference, tug_of_war
from unlearning.evaluation.membership import attack_features, strong_membership_attack
from unlearning.evaluation.predictions import feature_layer, predict
from unlearning.evaluation.probe import class_probe, membership_probe


def metrics(forget, retain, test, **extra):
    return {"forget_train_acc": forget, "retain_train_acc": retain, "test_acc": test, "retain_test_acc": retain,
            "forget_test_acc": forget, **extra}


def test_tug_of_war_is_zhao_et_al_product():
    reference = metrics(0.0, 100.0, 90.0)
    assert tug_of_war(reference, reference) == 1.0
    # |dDf| = 0.2, |dDr| = 0.1, |dtest| = 0.05 -> 0.8 * 0.9 * 0.95
    assert tug_of_war(metrics(20.0, 90.0, 85.0), reference) == pytest.approx(0.8 * 0.9 * 0.95)
    assert tug_of_war(metrics(100.0, 0.0, 90.0), reference) == pytest.approx(0.0)


def test_relative_record_has_deltas_gaps_and_both_tows():
    reference = metrics(0.0, 99.0, 90.0, mia=0.1, mia_auc=0.5)
    after = metrics(10.0, 97.0, 88.0, mia=0.3, mia_auc=0.7)
    original = metrics(100.0, 99.5, 99.0, mia=1.0, mia_auc=0.9)
    relative = relative_to_reference(after, original, reference, {"js_forget": 0.2})
    assert relative["delta_forget_train_acc"] == 10.0 and relative["delta_retain_train_acc"] == -2.0
    assert relative["gap_mia"] == pytest.approx(0.2) and relative["gap_mia_auc"] == pytest.approx(0.2)
    assert relative["tow_original"] < relative["tow"] < 1.0
    assert relative["js_forget"] == 0.2


def test_js_divergence_bounds_and_symmetry():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    assert mean_js(logits, logits) == pytest.approx(0.0, abs=1e-12)
    one_hot_a = torch.full((4, 3), -1e4).scatter(1, torch.zeros(4, 1, dtype=torch.long), 0.0)
    one_hot_b = torch.full((4, 3), -1e4).scatter(1, torch.ones(4, 1, dtype=torch.long), 0.0)
    assert js_divergence(one_hot_a, one_hot_b) == pytest.approx(torch.ones(4, dtype=torch.float64))  # 1 bit: disjoint
    other = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    assert js_divergence(logits, other) == pytest.approx(js_divergence(other, logits))
    # the textbook definition, computed the plain way
    p, q = F.softmax(logits.double(), 1), F.softmax(other.double(), 1)
    m = (p + q) / 2
    expected = 0.5 * (p * (p / m).log2()).sum(1) + 0.5 * (q * (q / m).log2()).sum(1)
    assert js_divergence(logits, other) == pytest.approx(expected)
    assert math.isnan(mean_js(torch.empty(0, 3), torch.empty(0, 3)))


def test_attack_features_match_their_definitions():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.5]])
    labels = torch.tensor([0, 2])
    p = F.softmax(logits.double(), 1)
    features = attack_features(logits, labels)
    for row, y in enumerate(labels.tolist()):
        correct, confidence, entropy, modified, loss = features[row]
        assert correct == float(logits[row].argmax() == y)
        assert confidence == pytest.approx(p[row, y].item())
        assert entropy == pytest.approx(-(p[row] * p[row].log()).sum().item())
        others = [j for j in range(3) if j != y]
        song_mittal = -(1 - p[row, y]) * p[row, y].log() - sum(p[row, j] * (1 - p[row, j]).log() for j in others)
        assert modified == pytest.approx(song_mittal.item())
        assert loss == pytest.approx(-p[row, y].log().item())


def confident(n: int, margin: float, seed: int, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose true-label margin is about ``margin`` (high: memorised, low: unseen)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(n, classes, generator=g)
    logits[torch.arange(n), labels] += margin + torch.randn(n, generator=g)
    return logits, labels


def test_strong_attack_separates_memorised_from_unseen_and_not_alike():
    members, nonmembers = confident(400, 8.0, 0), confident(400, 1.0, 1)
    forget_memorised, heldout = confident(100, 8.0, 2), confident(100, 1.0, 3)
    result = strong_membership_attack(*members, *nonmembers, *forget_memorised, *heldout)
    assert result["mia_strong"] > 0.9 and result["mia_auc"] > 0.95
    forget_unseen = confident(100, 1.0, 4)  # Df that looks like unseen data: the attack cannot tell
    result = strong_membership_attack(*members, *nonmembers, *forget_unseen, *heldout)
    assert result["mia_strong"] < 0.3 and 0.35 < result["mia_auc"] < 0.65
    empty = strong_membership_attack(*members, *nonmembers, torch.empty(0, 5), torch.empty(0, dtype=torch.long),
                                     *heldout)
    assert math.isnan(empty["mia_strong"]) and math.isnan(empty["mia_auc"])


def clustered_features(labels: np.ndarray, spread: float, seed: int) -> torch.Tensor:
    centres = np.random.default_rng(100).normal(size=(labels.max() + 1, 16)) * 3
    noise = np.random.default_rng(seed).normal(scale=spread, size=(len(labels), 16))
    return torch.as_tensor(centres[labels] + noise, dtype=torch.float32)


def test_class_probe_reads_what_the_features_know():
    train_labels = np.repeat(np.arange(4), 60)
    test_labels = np.repeat(np.arange(4), 20)
    forget, retain = np.flatnonzero(train_labels == 3), np.flatnonzero(train_labels != 3)
    forget_t, retain_t = np.flatnonzero(test_labels == 3), np.flatnonzero(test_labels != 3)
    knows = class_probe(clustered_features(train_labels, 1.0, 0), torch.as_tensor(train_labels), retain, forget,
                        clustered_features(test_labels, 1.0, 1), torch.as_tensor(test_labels), retain_t, forget_t)
    assert knows["probe_forget_test_acc"] == 100.0 and knows["probe_retain_test_acc"] > 95.0
    # Features where class 3 is noise around class 0's centre: the probe cannot find class 3 in them.
    erased_train = np.where(train_labels == 3, 0, train_labels)
    erased_test = np.where(test_labels == 3, 0, test_labels)
    forgot = class_probe(clustered_features(erased_train, 1.0, 0), torch.as_tensor(train_labels), retain, forget,
                         clustered_features(erased_test, 1.0, 1), torch.as_tensor(test_labels), retain_t, forget_t)
    assert forgot["probe_forget_test_acc"] < 75.0


def test_membership_probe_finds_members_only_when_features_differ():
    rng = np.random.default_rng(0)
    train = torch.as_tensor(rng.normal(size=(300, 8)) + 2.0, dtype=torch.float32)  # members sit apart
    test = torch.as_tensor(rng.normal(size=(200, 8)), dtype=torch.float32)
    retain, forget = np.arange(250), np.arange(250, 300)
    result = membership_probe(train, retain, forget, test)
    assert result["probe_forget_member"] > 0.9 and result["probe_member_auc"] > 0.95
    alike = torch.as_tensor(rng.normal(size=(300, 8)), dtype=torch.float32)
    result = membership_probe(alike, retain, forget, test)
    assert 0.3 < result["probe_member_auc"] < 0.7


def test_features_are_the_input_of_the_output_layer():
    from unlearning.models.resnet import build_resnet18

    model = build_resnet18(num_classes=10, in_channels=1).eval()
    assert feature_layer(model) is model.fc
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    logits, labels, features = predict(model, [(images, torch.arange(6))], features=True)
    assert features.shape == (6, 512)
    assert torch.allclose(model.fc(features), logits, atol=1e-5)
    assert not model.fc._forward_hooks, "the capturing hook must be removed after the pass"
    with pytest.raises(ValueError, match="no nn.Linear"):
        feature_layer(torch.nn.Conv2d(1, 1, 1))
