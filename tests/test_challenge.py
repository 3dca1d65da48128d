"""The unlearning challenge's score (unlearning.evaluation.challenge) against its rules and known answers.

``naive_epsilon`` transcribes the reference's ``_get_epsilons`` for one example as plainly as
possible (every test as a models x thresholds comparison, as google-deepmind/unlearning_evaluation's
metric.py does on a GPU); the module's sorted-count version must give the same numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearning.evaluation.challenge import (
    CONFIDENCE_BOUND,
    EPSILON_CAP,
    bucket_points,
    challenge_confidence,
    challenge_score,
    example_epsilon,
    forgetting_quality,
    same_distribution_ceiling,
)


def naive_rates_double(pos, neg):
    pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    if pos_diff >= neg_diff:
        pos, neg = neg, pos
    low, high = pos.min() + smallest - 2.0, pos.max() + 2.0
    rights = np.linspace(low, high, num=int(np.ceil((high - low) * 100)))
    n_left = int(np.ceil(2 * 2.0 * 100))
    lefts = np.concatenate([np.linspace(r - smallest - 2.0, r - smallest + 2.0, num=n_left) for r in rights])
    rights = np.tile(rights.reshape(-1, 1), (1, n_left)).reshape(-1)
    is_pp = lambda c: ((lefts[None, :] <= c[:, None]) & (c[:, None] <= rights[None, :])).astype(float)  # noqa: E731
    return is_pp(pos).mean(0), 1 - is_pp(pos).mean(0), is_pp(neg).mean(0), 1 - is_pp(neg).mean(0)


def naive_rates_single(pos, neg):
    both = np.concatenate([pos, neg])
    thresholds = np.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100)))
    tpr = (pos[:, None] >= thresholds[None, :]).mean(0)
    fpr = (neg[:, None] >= thresholds[None, :]).mean(0)
    return tpr, 1 - tpr, fpr, 1 - fpr


def naive_epsilon(pos, neg, delta=1e-5):
    largest = max(np.ptp(pos), np.ptp(neg))
    if min(np.ptp(pos), np.ptp(neg)) / largest < 0.01:
        return EPSILON_CAP
    rates = [np.concatenate(pair) for pair in zip(naive_rates_double(pos, neg), naive_rates_single(pos, neg),
                                                  strict=True)]
    tpr, fnr, fpr, tnr = rates
    eps = np.zeros_like(tpr)
    eps = np.where((fpr + fnr == 0) & (tpr + tnr == 2), np.inf, eps)
    eps = np.where((eps == 0) & (fpr * fnr == 0), np.nan, eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.clip(np.nanmax([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)],
                                  axis=0), 0, None)
    eps = np.where(eps == 0, value, eps)
    eps = eps[~np.isnan(eps)]
    return float(np.clip(np.nanmax(eps), 0, EPSILON_CAP))


@pytest.mark.parametrize("n_models,shift,scale", [(8, 0.0, 1.0), (16, 1.0, 1.0), (16, 0.3, 3.0), (64, 2.0, 0.5),
                                                  (5, 5.0, 1.0), (32, 0.0, 0.2)])
def test_epsilon_equals_the_reference_rules(n_models, shift, scale):
    rng = np.random.default_rng(n_models)
    for _ in range(4):
        pos, neg = rng.normal(shift, scale, n_models), rng.normal(0.0, 1.0, n_models)
        assert example_epsilon(pos, neg) == pytest.approx(naive_epsilon(pos, neg), abs=1e-9)


def test_degenerate_and_separated_families_get_the_cap():
    spread = np.linspace(-1, 1, 10)
    assert example_epsilon(spread * 0.001, spread) == EPSILON_CAP  # a spike next to a spread: the reference's rule
    assert example_epsilon(spread, spread + 10) == EPSILON_CAP  # perfectly separated
    assert example_epsilon(np.full(5, 2.0), np.full(5, 2.0)) == 0.0
    assert example_epsilon(np.full(5, 2.0), np.full(5, 3.0)) == EPSILON_CAP


def test_epsilon_grows_with_the_known_separation_of_two_gaussian_families():
    """Known answer: for N(mu, 1) against N(0, 1) the best single-threshold test's epsilon, with rates read
    from the exact normal CDFs and no rate below 1/N (what N models can resolve), lies below the estimate
    (the estimate is the max over ~160k noisy tests, biased upward) and within 1.2 of it; both grow with mu."""
    rng = np.random.default_rng(0)
    n_models = 128
    thresholds = np.linspace(-8, 8, 4001)
    cdf = np.vectorize(lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2))))
    previous = -1.0
    for mu in (0.5, 1.0, 2.0, 3.0):
        estimates = [example_epsilon(rng.normal(mu, 1, n_models), rng.normal(0, 1, n_models)) for _ in range(30)]
        fpr, fnr = 1 - cdf(thresholds), cdf(thresholds - mu)
        resolvable = (fpr >= 1 / n_models) & (fnr >= 1 / n_models)
        population = np.max(np.maximum(np.log(1 - fpr[resolvable]) - np.log(fnr[resolvable]),
                                       np.log(1 - fnr[resolvable]) - np.log(fpr[resolvable])))
        median = float(np.median(estimates))
        assert population <= median <= population + 1.2, (mu, population, median)
        assert median > previous
        previous = median


def test_points_follow_the_buckets_and_stop_at_ln_n_minus_one():
    # N = 5: ceil(ln 4) = 2, so buckets [0, .5) [.5, 1) [1, 1.5) [1.5, 2) earn 1, 1/2, 1/4, 1/8; 2 and above earn 0
    points = bucket_points(np.array([0.0, 0.49, 0.5, 1.2, 1.99, 2.0, 50.0]), n_models=5)
    assert points.tolist() == [1.0, 1.0, 0.5, 0.25, 0.125, 0.0, 0.0]
    assert bucket_points(np.array([0.3]), n_models=5, width=0.25).tolist() == [0.5]
    with pytest.raises(ValueError, match="at least 3 models"):
        bucket_points(np.array([0.0]), n_models=2)


def test_score_is_high_for_one_family_and_zero_for_separated_ones():
    rng = np.random.default_rng(1)
    same_a, same_b = rng.normal(0, 1, (16, 200)), rng.normal(0, 1, (16, 200))
    quality_same, _ = forgetting_quality(same_a, same_b)
    quality_apart, epsilons = forgetting_quality(same_a + 10, same_b)
    assert quality_apart == 0.0 and (epsilons == EPSILON_CAP).all()
    quality_close, _ = forgetting_quality(same_a + 1.0, same_b)
    assert quality_same > quality_close > quality_apart
    score = challenge_score(same_a, same_b, (np.array([90.0, 92.0]), np.array([100.0])),
                            (np.array([45.0]), np.array([50.0])))
    assert score.final == pytest.approx(quality_same * 0.91 * 0.9)
    with pytest.raises(ValueError, match="one shape"):
        forgetting_quality(same_a, same_b[:, :10])


def test_identical_models_score_one_and_one_distribution_far_less():
    """The ceiling docs/evaluation.md quotes: noise alone earns epsilon, so a perfect method scores < 1."""
    rng = np.random.default_rng(2)
    models = rng.normal(0, 1, (5, 300))
    assert forgetting_quality(models, models.copy())[0] == 1.0
    mean, std = same_distribution_ceiling(5, n_examples=300, draws=3)
    assert 0.05 < mean < 0.6 and std < 0.1
    assert same_distribution_ceiling(5, n_examples=300, draws=3) == (mean, std)  # seeded


def test_confidence_is_the_logit_scaled_probability_bounded_like_the_reference():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [500.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 0])
    phi = challenge_confidence(logits, labels)
    probs = torch.softmax(logits.double(), 1)
    expected = [math.log(probs[0, 0] / (1 - probs[0, 0])), math.log(probs[1, 2] / (1 - probs[1, 2]))]
    assert phi[:2] == pytest.approx(expected, rel=1e-9)
    assert phi[2] == pytest.approx(CONFIDENCE_BOUND)


@pytest.mark.e2e
def test_the_ceiling_docs_quote_is_what_the_command_computes():
    """docs/evaluation.md's ceiling table has no record: its N = 3 row is recomputed here (35 s of CPU) with the
    settings its command line uses (500 examples, 10 draws), so the table cannot drift from the code."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    assert "`python -m unlearning.evaluation.challenge --ceiling 3 5 8 16`" in doc, "the table's command changed"
    mean, std = same_distribution_ceiling(3, n_examples=500, draws=10)
    assert f"| 3 | {mean:.3f} ± {std:.3f} |" in doc, f"docs/evaluation.md should quote | 3 | {mean:.3f} ± {std:.3f} |"
