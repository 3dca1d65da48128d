"""Known answers for the two metrics in every table: the entropy membership attack and ZRF.

Each is checked twice: on a case small enough to work out by hand (the numbers are in the
comments), and against a plain transcription of the code the papers published, on real
data (scikit-learn's digits through a linear classifier, so that the logits have the
spread of a real model's). A change of formula (a sum where the reference takes a mean,
the other direction of a KL term, an entropy in bits) moves these numbers.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from unlearning.evaluation.metrics import entropy, membership_inference_from_logits, zrf_from_logits


def logits_of(probabilities: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is ``probabilities`` (log-probabilities are such logits)."""
    return torch.tensor(probabilities, dtype=torch.float64).log()


@pytest.fixture(scope="module")
def digits_logits() -> dict[str, torch.Tensor]:
    """Logits of a linear classifier trained on digits, for Dr-train, Df-train (digit 3) and the test split.

    Trained on the first 1,437 images (the project's split size), briefly (max_iter 30), so that
    the members are not all at zero entropy and the attack has something to separate.
    """
    digits = load_digits()
    images, labels = digits.data / 16.0, digits.target
    train, test = slice(0, 1437), slice(1437, None)
    with warnings.catch_warnings():  # stopped early on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier = LogisticRegression(max_iter=30).fit(images[train], labels[train])
    scores = torch.tensor(classifier.decision_function(images), dtype=torch.float32)
    forget = labels[train] == 3
    return {"retain": scores[train][~forget], "forget": scores[train][forget], "test": scores[test]}


# ------------------------------------------------------------------ entropy
def test_entropy_in_nats_by_hand():
    # uniform over 3: ln 3; (1/2, 1/4, 1/4): -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1/2 ln 2 + ln 2 = 1.5 ln 2
    values = entropy(logits_of([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]]))
    assert values.tolist() == pytest.approx([math.log(3), 1.5 * math.log(2)], abs=1e-6)
    assert entropy(torch.tensor([[60.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-20)


# ------------------------------------------------------------------ entropy membership attack
def test_attack_calls_confident_forget_samples_members_by_hand():
    """Members answer with certainty, non-members with a uniform guess: the attack's threshold lies between.

    Df: three confident samples and one uniform one, so three of four are called members (0.75),
    whatever the imbalance between members (40) and non-members (10) that the balanced weights undo.
    """
    confident, uniform = [0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3]
    retain = logits_of([confident] * 40)
    test = logits_of([uniform] * 10)
    forget = logits_of([confident, confident, confident, uniform])
    assert membership_inference_from_logits(retain, forget, test) == 0.75
    assert membership_inference_from_logits(retain, logits_of([uniform] * 4), test) == 0.0
    assert math.isnan(membership_inference_from_logits(retain, forget[:0], test))


def reference_mia(retain_logits: torch.Tensor, forget_logits: torch.Tensor, test_logits: torch.Tensor) -> float:
    """The SSD paper's ``get_membership_attack_prob`` (if-loops/selective-synaptic-dampening, ``metrics.py``).

    Transcribed from its softmax probabilities and its ``entropy`` (``p * p.log()`` where p > 0).
    Its ``LogisticRegression`` also passed ``multi_class="multinomial"``, which scikit-learn 1.8
    removed; on two classes a multinomial fit is the binary one with C doubled. Both are run
    below and must agree on these data.
    """
    def reference_entropy(p: torch.Tensor) -> torch.Tensor:
        return -torch.where(p > 0, p * p.log(), p.new([0.0])).sum(dim=-1)

    retain_prob, forget_prob, test_prob = (F.softmax(x, dim=-1) for x in (retain_logits, forget_logits, test_logits))
    x_r = torch.cat([reference_entropy(retain_prob), reference_entropy(test_prob)]).numpy().reshape(-1, 1)
    y_r = np.concatenate([np.ones(len(retain_prob)), np.zeros(len(test_prob))])
    x_f = reference_entropy(forget_prob).numpy().reshape(-1, 1)
    answers = []
    for c in (1.0, 2.0):  # the binary fit, and the two-class multinomial one
        clf = LogisticRegression(class_weight="balanced", solver="lbfgs", C=c)
        clf.fit(x_r, y_r)
        answers.append(float(clf.predict(x_f).mean()))
    assert answers[0] == pytest.approx(answers[1], abs=1 / len(x_f) + 1e-12)
    return answers[0]


def test_attack_matches_the_papers_code_on_digits(digits_logits):
    ours = membership_inference_from_logits(digits_logits["retain"], digits_logits["forget"], digits_logits["test"])
    theirs = reference_mia(digits_logits["retain"], digits_logits["forget"], digits_logits["test"])
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert 0.0 < ours < 1.0, "the case must not be degenerate (everything or nothing called a member)"


# ------------------------------------------------------------------ ZRF
def test_zrf_by_hand():
    """p = (0.5, 0.5), q = (0.9, 0.1): m = (0.7, 0.3); the means run over the N x C = 2 entries.

    KL(m || p) entries: 0.7 ln(0.7/0.5) + 0.3 ln(0.3/0.5) = 0.235531 - 0.153248 = 0.082283, mean 0.0411415
    KL(m || q) entries: 0.7 ln(0.7/0.9) + 0.3 ln(0.3/0.1) = -0.175920 + 0.329584 = 0.153664, mean 0.076832
    ZRF = 1 - (0.0411415 + 0.076832) / 2 = 0.9410134 (to 7 places)
    """
    p, q = logits_of([[0.5, 0.5]]), logits_of([[0.9, 0.1]])
    by_hand = 1 - 0.5 * (0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)) / 2 \
                - 0.5 * (0.7 * math.log(0.7 / 0.9) + 0.3 * math.log(0.3 / 0.1)) / 2
    assert by_hand == pytest.approx(0.9410134, abs=1e-7)
    assert zrf_from_logits(p, q) == pytest.approx(by_hand, abs=1e-6)
    assert zrf_from_logits(q, p) == pytest.approx(by_hand, abs=1e-6), "Jensen-Shannon is symmetric"
    assert zrf_from_logits(p, p) == pytest.approx(1.0, abs=1e-7), "a model that is the random one scores 1"


def reference_js_div(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``JSDiv`` of the bad-teacher paper's code (vikram2000b/bad-teaching-unlearning), on softmax outputs."""
    m = (p + q) / 2
    with warnings.catch_warnings():  # PyTorch says "mean" will mean "batchmean" one day; the reference used "mean"
        warnings.simplefilter("ignore", UserWarning)
        return 0.5 * F.kl_div(torch.log(p), m, reduction="mean") + 0.5 * F.kl_div(torch.log(q), m, reduction="mean")


def test_zrf_matches_the_bad_teacher_code_on_digits(digits_logits):
    """``UnLearningScore`` = 1 - JSDiv(softmax(model), softmax(random model)), on the digits forget set.

    ``F.kl_div(log p, m)`` is KL(m || p), and its default reduction averages over all N x C
    entries: the score is 1 - (KL(m || p) + KL(m || q)) / (2 C), averaged over samples. That is not
    the textbook Jensen-Shannon divergence, (KL(p || m) + KL(q || m)) / 2, which is bounded by
    ln 2: the reference's KL terms run the other way and are unbounded (a ZRF below 0 is possible).
    We keep the reference definition, so that numbers compare with the papers that report ZRF.
    """
    model = digits_logits["forget"]
    random_model = torch.randn(model.shape, generator=torch.Generator().manual_seed(0))
    p, q = F.softmax(model, dim=1), F.softmax(random_model, dim=1)
    expected = 1 - float(reference_js_div(p, q))
    assert zrf_from_logits(model, random_model) == pytest.approx(expected, abs=1e-6)
    m = (p + q) / 2
    per_sample = (0.5 * (m * (m / p).log()).sum(1) + 0.5 * (m * (m / q).log()).sum(1)).mean()
    assert 1 - zrf_from_logits(model, random_model) == pytest.approx(float(per_sample) / model.shape[1], rel=1e-5)
    textbook = float((0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)).mean())
    assert 0.01 < textbook < math.log(2), "a real, non-degenerate case"
    assert float(per_sample) != pytest.approx(textbook, rel=0.05), "the reference's divergence is not JS"
