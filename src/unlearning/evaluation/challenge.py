"""The NeurIPS 2023 machine-unlearning challenge's score (computational core only).

Triantafillou et al. (2024), "Are we making progress in unlearning? Findings from the first
NeurIPS unlearning competition"; reference code: google-deepmind/unlearning_evaluation,
``metric.py`` and ``main.py``. The score compares the *distribution*, over N models, of each
forgotten example's confidence under unlearned models with the same under models retrained
without the forget set:

1. Per Df example and model, the logit-scaled confidence ``log p_y - log(1 - p_y)``.
2. Per example, the two families of N values are told apart by the best of many threshold
   tests (a one-threshold rule, and a two-threshold rule that calls everything between its
   thresholds the peakier family). Each test's false positive and false negative rates give
   ``epsilon = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)``, the
   privacy loss an (epsilon, delta)-DP guarantee would have to allow; the example's epsilon is
   the largest over the tests, capped at 50.
3. Epsilons fall into buckets of width 0.5: the first bucket earns 1 point, the next 1/2, then
   1/4 ...; only buckets that end at or below ``ceil(ln(N - 1))`` earn anything (with N models
   no larger epsilon can be told from noise). The forgetting quality F is the mean over Df.
4. The final score is ``F x (retain accuracy ratio) x (test accuracy ratio)``, unlearned over
   retrained (means over the N models).

So F = 1 means no test can tell unlearned from retrained on any forgotten example; F = 0 means
every example gives the unlearning away. Unlike Tug-of-War (accuracy gaps on whole splits) or
the population MIA, it looks at every example separately and at the spread between models,
and unlike U-LiRA it needs no shadow models on halves of D, only N retrained references.

Rules followed exactly: positive side per example = the family with the larger median; the
degenerate rule (the peakier family's range below 1 % of the other's: epsilon = cap); perfect
separation (FPR = FNR = 0): infinite, then capped; a test with only one of FPR or FNR zero is
discarded (too few samples to estimate it); 100 thresholds per unit of confidence; the
two-threshold family's window widths and the 2.0 buffer. **Departures** (none changes a score
on non-degenerate input): the confidence uses the exact identity ``z_y - logsumexp_{j != y}
z_j`` clipped at +-ln(1e45) (the reference adds 1e-45 to both probabilities, which saturates at
the same value); rates are counted with sorted arrays instead of a models x thresholds matrix
on a GPU (the same counts); when every test of an example is discarded, or both families are
constant, the reference fails an assertion or divides by zero: here such an example's epsilon
is 0 (equal constants) or the cap (different constants).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from unlearning.evaluation.ulira import logit_scaled_confidence

DELTA = 1e-5
EPSILON_CAP = 50.0
BUCKET_WIDTH = 0.5
THRESHOLDS_PER_UNIT = 100
#: The two-threshold rule's margin around the peakier family (reference: ``buffer = 2.0``).
BUFFER = 2.0
#: The reference's ``log(p + 1e-45)`` bounds a confidence at +-ln(1e45).
CONFIDENCE_BOUND = 45 * math.log(10)


def challenge_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per example ``log p_y - log(1 - p_y)`` (float64), bounded as the reference's is."""
    phi = logit_scaled_confidence(logits.double(), labels)
    return phi.clamp(-CONFIDENCE_BOUND, CONFIDENCE_BOUND).cpu().numpy()


def _count_at_most(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_values, thresholds, side="right")


def _count_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_values, thresholds, side="left")


def _double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of every test "positive iff left <= c <= right", positive = the peakier family."""
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width = np.ptp(pos)
    low, high = pos.min() + width - BUFFER, pos.max() + BUFFER
    right = np.linspace(low, high, num=int(np.ceil((high - low) * THRESHOLDS_PER_UNIT)))
    per_right = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
    left = np.concatenate([np.linspace(r - width - BUFFER, r - width + BUFFER, num=per_right) for r in right])
    right = np.repeat(right, per_right)
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    inside_pos = _count_at_most(pos_sorted, right) - _count_below(pos_sorted, left)
    inside_neg = _count_at_most(neg_sorted, right) - _count_below(neg_sorted, left)
    inside_pos, inside_neg = np.maximum(inside_pos, 0), np.maximum(inside_neg, 0)  # left > right: empty window
    return inside_neg / len(neg), 1.0 - inside_pos / len(pos)


def _single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of every test "positive iff c >= t" over a grid spanning both families."""
    both = np.concatenate([pos, neg])
    low, high = both.min(), both.max()
    thresholds = np.linspace(low, high, num=int(np.ceil((high - low) * THRESHOLDS_PER_UNIT)))
    positive_pos = len(pos) - _count_below(np.sort(pos), thresholds)
    positive_neg = len(neg) - _count_below(np.sort(neg), thresholds)
    return positive_neg / len(neg), 1.0 - positive_pos / len(pos)


def example_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = DELTA, cap: float = EPSILON_CAP) -> float:
    """The estimated epsilon of one example from its two families of confidences (one value per model)."""
    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    largest, smallest = max(np.ptp(pos), np.ptp(neg)), min(np.ptp(pos), np.ptp(neg))
    if largest == 0:  # both families constant
        return 0.0 if pos[0] == neg[0] else cap
    if smallest / largest < 0.01:  # one family is a spike: the reference calls that the worst case
        return cap
    fpr_d, fnr_d = _double_threshold_rates(pos, neg)
    fpr_s, fnr_s = _single_threshold_rates(pos, neg)
    fpr, fnr = np.concatenate([fpr_d, fpr_s]), np.concatenate([fnr_d, fnr_s])
    if np.any((fpr == 0) & (fnr == 0)):  # a test separates the families perfectly
        return cap
    usable = (fpr > 0) & (fnr > 0)  # one error rate of 0 alone: too few samples to estimate it
    if not usable.any():
        return 0.0
    fpr, fnr = fpr[usable], fnr[usable]
    with np.errstate(invalid="ignore", divide="ignore"):  # log of 1 - delta - rate < 0 is NaN: that side drops
        sides = np.stack([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)])
    per_test = np.where(np.isnan(sides).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(sides), -np.inf, sides), axis=0))
    if np.isnan(per_test).all():
        return 0.0
    return float(np.clip(np.nanmax(np.clip(per_test, 0, None)), 0, cap))


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA,
                     cap: float = EPSILON_CAP) -> np.ndarray:
    """Per example (column) epsilon; the positive family of each is the one with the larger median."""
    unlearned, retrained = _check_families(unlearned, retrained)
    retrain_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    pos = np.where(retrain_positive, retrained, unlearned)
    neg = np.where(retrain_positive, unlearned, retrained)
    return np.array([example_epsilon(pos[:, i], neg[:, i], delta, cap) for i in range(pos.shape[1])])


def bucket_points(epsilons: np.ndarray, n_models: int, width: float = BUCKET_WIDTH) -> np.ndarray:
    """Points per example: 2^-k in the k-th bucket of ``width``; 0 past ``ceil(ln(N - 1))``."""
    if n_models < 3:
        raise ValueError(f"the score needs at least 3 models per family (got {n_models}): with N models no "
                         f"epsilon above ceil(ln(N - 1)) = {math.ceil(math.log(max(n_models - 1, 1)))} is scored.")
    max_epsilon = math.ceil(math.log(n_models - 1))
    buckets = int(max_epsilon // width + 1e-9)  # buckets ending at or below max_epsilon
    index = np.floor(np.asarray(epsilons, dtype=np.float64) / width).astype(np.int64)
    return np.where(index < buckets, 0.5 ** np.minimum(index, 1000), 0.0)


def _check_families(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unlearned, retrained = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
    if unlearned.ndim != 2 or unlearned.shape != retrained.shape:
        raise ValueError(f"confidences must be (models, examples) of one shape, got {unlearned.shape} and "
                         f"{retrained.shape}")
    return unlearned, retrained


@dataclass(frozen=True)
class ChallengeScore:
    forgetting_quality: float
    retain_ratio: float
    test_ratio: float
    epsilons: np.ndarray

    @property
    def final(self) -> float:
        return self.forgetting_quality * self.retain_ratio * self.test_ratio

    def as_dict(self) -> dict[str, float]:
        return {"final_score": self.final, "forgetting_quality": self.forgetting_quality,
                "retain_ratio": self.retain_ratio, "test_ratio": self.test_ratio,
                "epsilon_mean": float(np.mean(self.epsilons)), "epsilon_median": float(np.median(self.epsilons)),
                "share_at_cap": float(np.mean(self.epsilons >= EPSILON_CAP))}


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA,
                       width: float = BUCKET_WIDTH) -> tuple[float, np.ndarray]:
    """F (the mean of the examples' points) and the per-example epsilons."""
    unlearned, retrained = _check_families(unlearned, retrained)
    epsilons = example_epsilons(unlearned, retrained, delta)
    return float(bucket_points(epsilons, unlearned.shape[0], width).mean()), epsilons


def challenge_score(unlearned: np.ndarray, retrained: np.ndarray, retain_acc: tuple[np.ndarray, np.ndarray],
                    test_acc: tuple[np.ndarray, np.ndarray], delta: float = DELTA,
                    width: float = BUCKET_WIDTH) -> ChallengeScore:
    """The final score; ``retain_acc`` and ``test_acc`` are (unlearned models', retrained models') accuracies."""
    quality, epsilons = forgetting_quality(unlearned, retrained, delta, width)
    return ChallengeScore(quality, float(np.mean(retain_acc[0]) / np.mean(retain_acc[1])),
                          float(np.mean(test_acc[0]) / np.mean(test_acc[1])), epsilons)


def same_distribution_ceiling(n_models: int, n_examples: int = 1000, draws: int = 20, seed: int = 0,
                              delta: float = DELTA, width: float = BUCKET_WIDTH) -> tuple[float, float]:
    """Mean and std over ``draws`` of F for two families drawn from one distribution per example.

    What a perfect method would score against references retrained from other seeds: each
    example's confidences, unlearned and retrained alike, come from one normal distribution (its
    mean drawn per example). Far below 1 with few models, because each example's epsilon is the
    best of hundreds of threshold tests on 2N noisy values; docs/evaluation.md quotes it.
    """
    generator = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        centres = generator.normal(0.0, 3.0, size=(1, n_examples))
        unlearned = centres + generator.normal(size=(n_models, n_examples))
        retrained = centres + generator.normal(size=(n_models, n_examples))
        scores.append(forgetting_quality(unlearned, retrained, delta, width)[0])
    return float(np.mean(scores)), float(np.std(scores))


def main(argv: list[str] | None = None) -> None:
    """``python -m unlearning.evaluation.challenge --ceiling 3 5 8``: the same-distribution ceiling per N."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ceiling", type=int, nargs="+", required=True, metavar="N",
                        help="numbers of models per family (each >= 3)")
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args(argv)
    if min(args.ceiling) < 3:
        parser.error("every N must be >= 3: the buckets end at ceil(ln(N - 1))")
    print("| N models per family | F, same distribution (mean ± std) |\n|---:|---:|")
    for n in args.ceiling:
        mean, std = same_distribution_ceiling(n, args.examples, args.draws)
        print(f"| {n} | {mean:.3f} ± {std:.3f} |")


if __name__ == "__main__":
    main()
