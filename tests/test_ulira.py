"""U-LiRA core: logit-scaled confidences, the Gaussian likelihood ratio and the leave-one-out audit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from unlearning.evaluation.ulira import (
    GLOBAL_VARIANCE_BELOW,
    _auroc,
    gaussian_likelihood_ratio,
    leave_one_out_audit,
    logit_scaled_confidence,
)


def synthetic(seed: int, shift: float, shadows: int = 64, samples: int = 2000, spread: float = 5.0):
    """Confidences of ``shadows`` models on ``samples`` samples: "retrained" ~ N(mu_n, 1) and
    "unlearned" ~ N(mu_n + shift, 1), with per-sample offsets mu_n ~ N(0, spread) that only a
    per-sample calibration can remove; a fifth of the entries is masked (-1)."""
    rng = np.random.default_rng(seed)
    status = rng.choice([-1, 0, 1], size=(shadows, samples), p=[0.2, 0.4, 0.4])
    offset = rng.normal(0.0, spread, size=samples)
    phi = offset + rng.normal(size=(shadows, samples)) + shift * (status == 1)
    return phi, status


# --- logit-scaled confidence ---------------------------------------------------------------------

def test_logit_scaled_confidence_matches_naive_formula():
    torch.manual_seed(0)
    logits = torch.randn(200, 10, dtype=torch.float64) * 3
    labels = torch.randint(0, 10, (200,))
    p = torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    naive = torch.log(p / (1 - p))
    torch.testing.assert_close(logit_scaled_confidence(logits, labels), naive, rtol=1e-10, atol=1e-10)
    # float32 logits give float32 results close to the float64 ones
    phi32 = logit_scaled_confidence(logits.float(), labels)
    assert phi32.dtype == torch.float32
    torch.testing.assert_close(phi32.double(), naive, rtol=1e-5, atol=1e-5)


def test_logit_scaled_confidence_is_finite_for_huge_margins():
    logits = torch.tensor([[1000.0, 0.0, -5.0], [0.0, 1000.0, 0.0], [200.0, 200.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    naive = torch.logit(torch.softmax(logits, dim=1)[:, 0])
    assert not torch.isfinite(naive[:2]).any()  # the naive formula saturates to +-inf
    phi = logit_scaled_confidence(logits, labels)
    assert torch.isfinite(phi).all()
    # z_y - logsumexp(others): 1000 - log(1 + e^-5), 0 - logsumexp(1000, 0) = -1000, 200 - logsumexp(200, 0) ~ 0
    expected = torch.tensor([1000.0 - math.log1p(math.exp(-5.0)), -1000.0, 0.0])
    torch.testing.assert_close(phi, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("logits,labels,message", [
    (torch.zeros(3), torch.zeros(3, dtype=torch.long), "2-D"),
    (torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), "at least 2 classes"),
    (torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), "labels must have shape"),
    (torch.zeros(3, 4), torch.tensor([0, 4, 1]), r"labels must lie in \[0, 4\)"),
    (torch.zeros(3, 4), torch.zeros(3), "integers"),
])
def test_logit_scaled_confidence_rejects_bad_input(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        logit_scaled_confidence(logits, labels)


# --- Gaussian likelihood ratio -------------------------------------------------------------------

def test_likelihood_ratio_per_example_variance_known_answer():
    rng = np.random.default_rng(1)
    target = np.array([0.3, -1.2, 4.0])
    obs_in = rng.normal(1.0, 0.7, size=(3, 6))
    obs_out = rng.normal(-0.5, 1.3, size=(3, 9))
    expected = (norm.logpdf(target, obs_in.mean(1), obs_in.std(1, ddof=1))
                - norm.logpdf(target, obs_out.mean(1), obs_out.std(1, ddof=1)))
    got = gaussian_likelihood_ratio(target, obs_in, obs_out, global_variance=False)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # one sample: scalar target and 1-D observations, torch tensors accepted
    one = gaussian_likelihood_ratio(torch.tensor(0.3, dtype=torch.float64), torch.from_numpy(obs_in[0]), obs_out[0], global_variance=False)
    assert one.shape == () and float(one) == pytest.approx(expected[0], rel=1e-12)


def test_likelihood_ratio_global_variance_known_answer_with_missing_observations():
    rng = np.random.default_rng(2)
    target = np.array([0.0, 1.0, 2.5, -3.0])
    obs_in = rng.normal([[0.0], [1.0], [2.0], [3.0]], 1.0, size=(4, 5))
    obs_out = rng.normal([[1.0], [0.0], [-1.0], [0.5]], 2.0, size=(4, 7))
    obs_in[1, 3:] = np.nan  # ragged: sample 1 has only 3 "unlearned" observations
    obs_out[2, :4] = np.nan
    # pooled within-sample variance per side: sum of squared deviations / (observations - samples)
    expected = np.zeros(4)
    pooled = []
    for obs in (obs_in, obs_out):
        rows = [row[~np.isnan(row)] for row in obs]
        ssd = sum(((row - row.mean()) ** 2).sum() for row in rows)
        pooled.append(math.sqrt(ssd / (sum(len(row) for row in rows) - len(rows))))
    for n in range(4):
        row_in, row_out = obs_in[n][~np.isnan(obs_in[n])], obs_out[n][~np.isnan(obs_out[n])]
        expected[n] = norm.logpdf(target[n], row_in.mean(), pooled[0]) - norm.logpdf(target[n], row_out.mean(), pooled[1])
    np.testing.assert_allclose(gaussian_likelihood_ratio(target, obs_in, obs_out, global_variance=True), expected,
                               rtol=1e-12)
    # fewer than 64 observations per side: the default is the global variance
    np.testing.assert_array_equal(gaussian_likelihood_ratio(target, obs_in, obs_out), expected)


def test_likelihood_ratio_default_is_per_example_with_many_observations():
    rng = np.random.default_rng(3)
    target = rng.normal(size=5)
    obs_in = rng.normal(1.0, rng.uniform(0.5, 2.0, size=(5, 1)), size=(5, GLOBAL_VARIANCE_BELOW))
    obs_out = rng.normal(0.0, 1.0, size=(5, GLOBAL_VARIANCE_BELOW + 10))
    per_example = gaussian_likelihood_ratio(target, obs_in, obs_out, global_variance=False)
    pooled = gaussian_likelihood_ratio(target, obs_in, obs_out, global_variance=True)
    assert not np.allclose(per_example, pooled)
    np.testing.assert_array_equal(gaussian_likelihood_ratio(target, obs_in, obs_out), per_example)
    obs_in[0, -1] = np.nan  # one sample falls below 64 "unlearned" observations: pool again
    np.testing.assert_array_equal(gaussian_likelihood_ratio(target, obs_in, obs_out),
                                  gaussian_likelihood_ratio(target, obs_in, obs_out, global_variance=True))


def test_likelihood_ratio_floors_the_std_and_marks_undefined_samples():
    target = np.array([1.0, 0.0])
    obs_in = np.array([[1.0, 1.0, 1.0], [1.0, np.nan, np.nan]])  # identical values; a single one
    obs_out = np.array([[0.0, 2.0, np.nan], [0.0, 1.0, 2.0]])
    got = gaussian_likelihood_ratio(target, obs_in, obs_out, min_std=0.1, global_variance=False)
    expected0 = norm.logpdf(1.0, 1.0, 0.1) - norm.logpdf(1.0, 1.0, math.sqrt(2.0))
    assert got[0] == pytest.approx(expected0, rel=1e-12)
    assert math.isnan(got[1])  # no variance from one observation
    no_out = gaussian_likelihood_ratio(np.array([0.0]), np.array([[1.0, 2.0]]), np.array([[np.nan, np.nan]]))
    assert math.isnan(no_out[0])


@pytest.mark.parametrize("target,obs_in,obs_out,message", [
    (np.zeros(3), np.zeros((2, 4)), np.zeros((3, 4)), r"in_phi must have shape \(3, S\)"),
    (np.zeros(3), np.zeros((3, 4)), np.zeros(4), r"out_phi must have shape \(3, S\)"),
    (0.0, np.zeros((1, 4)), np.zeros(4), "scalar target"),
    (np.zeros((2, 2)), np.zeros((2, 4)), np.zeros((2, 4)), "scalar or 1-D"),
    (np.zeros(1), np.array([[0.0, np.inf]]), np.zeros((1, 2)), "infinite"),
])
def test_likelihood_ratio_rejects_bad_input(target, obs_in, obs_out, message):
    with pytest.raises(ValueError, match=message):
        gaussian_likelihood_ratio(target, obs_in, obs_out)


# --- leave-one-out audit -------------------------------------------------------------------------

def test_audit_separates_unlearned_from_retrained():
    phi, status = synthetic(seed=0, shift=2.0)
    result = leave_one_out_audit(phi, status)
    # known Gaussians, equal variances: AUC = P(N(2, 1) > N(0, 1)) = Phi(2 / sqrt(2)) ~ 0.921 and the
    # LR > 0 rule (threshold half-way) has balanced accuracy Phi(1) ~ 0.841; fitting from ~25 shadows
    # per side costs a little
    assert result["auc"] == pytest.approx(norm.cdf(2.0 / math.sqrt(2.0)), abs=0.015)
    assert result["balanced_accuracy_at_zero"] == pytest.approx(norm.cdf(1.0), abs=0.015)
    assert result["balanced_accuracy_at_zero"] <= result["balanced_accuracy"] < result["auc"]
    assert result["global_variance"] is True  # ~25 observations per side < 64
    used = status != -1
    assert 0.95 * used.sum() < result["n_pairs"] <= used.sum()
    assert result["n_pairs"] == result["n_unlearned"] + result["n_retrained"] == len(result["scores"])
    # the per-sample calibration is what makes the attack work: one threshold on raw confidences
    # is swamped by the per-sample offsets
    assert roc_auc_score(status[used], phi[used]) < 0.7
    # the AUC is the one of the returned scores and labels
    assert result["auc"] == pytest.approx(roc_auc_score(result["labels"], result["scores"]), abs=1e-6)


def test_audit_finds_nothing_when_both_sides_agree():
    phi, status = synthetic(seed=1, shift=0.0)
    result = leave_one_out_audit(phi, status)
    assert result["auc"] == pytest.approx(0.5, abs=0.02)
    assert result["balanced_accuracy_at_zero"] == pytest.approx(0.5, abs=0.02)
    assert result["balanced_accuracy"] == pytest.approx(0.5, abs=0.02)


def memorised_shadows(seed: int, mislabelled: bool, shadows: int = 12, targets: int = 100):
    """Confidences of ``shadows`` real models on 100 digits that each model saw with probability 1/2.

    The models are multinomial logistic regressions (C = 100, weakly regularised) on the
    project's 1,437 training digits; the 100 targets are drawn with ``seed`` and, when
    ``mislabelled``, carry a wrong label (the label they are scored on): a model that trained on
    such a sample memorised it, one that did not answers its true class.
    """
    digits = load_digits()
    images, labels = digits.data[:1437] / 16.0, digits.target[:1437]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), targets, replace=False)
    scored = (labels[chosen] + rng.integers(1, 10, size=targets)) % 10 if mislabelled else labels[chosen]
    always = np.setdiff1d(np.arange(len(images)), chosen)
    status, phi = np.zeros((shadows, targets), dtype=int), np.zeros((shadows, targets))
    for k in range(shadows):
        member = np.random.default_rng(100 + k).random(targets) < 0.5
        x = np.concatenate([images[always], images[chosen][member]])
        y = np.concatenate([labels[always], scored[member]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=100.0, max_iter=200).fit(x, y)
        logits = torch.tensor(model.decision_function(images[chosen]))
        status[k], phi[k] = member, logit_scaled_confidence(logits, torch.tensor(scored)).numpy()
    return phi, status


@pytest.mark.parametrize("seed", [0, 1])
def test_audit_finds_memorised_members_of_real_models(seed):
    """The positive control beside the no-power case above: the audit *can* find members on real data.

    Mislabelled digits are memorised by the models that trained on them; the audit must tell
    those models from the ones that never saw the samples. Measured (seeds 0, 1, 2 of the draw):
    AUC 0.994, 0.993, 0.995, balanced accuracy at LR > 0 0.971, 0.960, 0.964; with the true labels
    the same models leave far less to find (AUC 0.611, 0.674, 0.582). About 3 s.
    """
    memorised = leave_one_out_audit(*memorised_shadows(seed, mislabelled=True))
    assert memorised["auc"] > 0.95 and memorised["balanced_accuracy_at_zero"] > 0.9, memorised["auc"]
    generalised = leave_one_out_audit(*memorised_shadows(seed, mislabelled=False))
    assert generalised["auc"] < memorised["auc"] - 0.2, (generalised["auc"], memorised["auc"])


def brute_force_audit(phi: np.ndarray, status: np.ndarray, min_observations: int, global_variance: bool):
    """Loop-by-loop reference of the audit: scores keyed by (shadow, sample)."""
    shadows, samples = phi.shape
    scores = {}
    for k in range(shadows):
        sides = {}
        for n in range(samples):
            if status[k, n] == -1:
                continue
            others = [j for j in range(shadows) if j != k]
            obs_in = np.array([phi[j, n] for j in others if status[j, n] == 1])
            obs_out = np.array([phi[j, n] for j in others if status[j, n] == 0])
            if len(obs_in) >= min_observations and len(obs_out) >= min_observations:
                sides[n] = (obs_in, obs_out)
        if not sides:
            continue
        if global_variance:
            pooled = [math.sqrt(sum(((s[i] - s[i].mean()) ** 2).sum() for s in sides.values())
                                / sum(len(s[i]) - 1 for s in sides.values())) for i in (0, 1)]
        for n, (obs_in, obs_out) in sides.items():
            sd_in, sd_out = pooled if global_variance else (obs_in.std(ddof=1), obs_out.std(ddof=1))
            scores[k, n] = norm.logpdf(phi[k, n], obs_in.mean(), sd_in) - norm.logpdf(phi[k, n], obs_out.mean(), sd_out)
    return scores


@pytest.mark.parametrize("global_variance", [True, False])
def test_audit_matches_a_brute_force_reference(global_variance):
    rng = np.random.default_rng(4)
    shadows, samples = 13, 40
    status = rng.choice([-1, 0, 1], size=(shadows, samples), p=[0.3, 0.35, 0.35])
    phi = rng.normal(size=samples) + rng.normal(0.0, rng.uniform(0.5, 2.0, size=samples), size=(shadows, samples))
    phi += 0.8 * (status == 1)
    result = leave_one_out_audit(phi, status, min_observations=3, global_variance=global_variance)
    reference = brute_force_audit(phi, status, 3, global_variance)
    assert 150 < result["n_pairs"] == len(reference) < (status != -1).sum()  # some pairs are skipped
    got = {(int(k), int(n)): s for k, n, s in zip(result["shadow"], result["example"], result["scores"], strict=True)}
    assert got.keys() == reference.keys()
    np.testing.assert_allclose([got[key] for key in reference], list(reference.values()), rtol=1e-9, atol=1e-9)
    labels = np.array([status[key] for key in reference])
    np.testing.assert_array_equal(result["labels"], [status[k, n] for k, n in got])
    values = np.array(list(reference.values()))
    assert result["auc"] == pytest.approx(roc_auc_score(labels, values), abs=1e-6)
    # best balanced accuracy over every candidate threshold, and the LR > 0 rule
    best = max(0.5 * ((values[labels == 1] >= t).mean() + (values[labels == 0] < t).mean()) for t in values)
    assert result["balanced_accuracy"] == pytest.approx(best, abs=1e-12)
    at_threshold = 0.5 * ((values[labels == 1] >= result["threshold"]).mean()
                          + (values[labels == 0] < result["threshold"]).mean())
    assert at_threshold == pytest.approx(best, abs=1e-12)
    at_zero = 0.5 * ((values[labels == 1] > 0).mean() + (values[labels == 0] <= 0).mean())
    assert result["balanced_accuracy_at_zero"] == pytest.approx(at_zero, abs=1e-12)
    # per-sample mean over the shadows that scored it
    for n in range(samples):
        mine = [s for (k, m), s in reference.items() if m == n]
        assert result["per_example_count"][n] == len(mine)
        if mine:
            assert result["per_example_score"][n] == pytest.approx(np.mean(mine), rel=1e-9, abs=1e-9)
        else:
            assert math.isnan(result["per_example_score"][n])


def test_audit_ignores_masked_entries():
    phi, status = synthetic(seed=2, shift=1.0, shadows=16, samples=300)
    result = leave_one_out_audit(phi, status)
    masked = status == -1
    for fill in (np.nan, np.inf, 1e30, -7.0):
        changed = phi.copy()
        changed[masked] = fill
        other = leave_one_out_audit(changed, status)
        for key, value in result.items():
            np.testing.assert_array_equal(other[key], value, err_msg=f"{key} changed with masked entries = {fill}")
    # sanity: changing an unmasked entry does change the result
    changed = phi.copy()
    changed[~masked] += np.random.default_rng(0).normal(size=(~masked).sum())
    assert leave_one_out_audit(changed, status)["auc"] != result["auc"]


def test_audit_uses_per_example_variance_with_many_shadows():
    phi, status = synthetic(seed=3, shift=2.0, shadows=2 * GLOBAL_VARIANCE_BELOW + 2, samples=20)
    status[status == -1] = 0
    status[: GLOBAL_VARIANCE_BELOW + 1] = 1  # every sample: >= 64 observations per side for every target
    status[GLOBAL_VARIANCE_BELOW + 1:] = 0
    result = leave_one_out_audit(phi, status)
    assert result["global_variance"] is False
    np.testing.assert_array_equal(result["scores"], leave_one_out_audit(phi, status, global_variance=False)["scores"])


def test_auroc_is_immune_to_sigmoid_saturation():
    # torchmetrics would squash these into float32 sigmoid(.) == 1.0, i.e. ties and AUC 0.5
    scores = np.array([100.0, 101.0, 102.0, 103.0])
    assert _auroc(scores, np.array([0, 1, 0, 1])) == pytest.approx(0.75)


@pytest.mark.parametrize("confidences,status,kwargs,message", [
    (np.zeros(5), np.zeros(5, dtype=int), {}, "2-D"),
    (np.zeros((5, 3)), np.zeros((5, 4), dtype=int), {}, "shape of confidences"),
    (np.zeros((5, 0)), np.zeros((5, 0), dtype=int), {}, "no sample"),
    (np.zeros((5, 3)), np.full((5, 3), 2), {}, r"status values must be 1 .* got \[2\]"),
    (np.zeros((5, 3)), np.full((5, 3), 0.5), {}, "status values"),
    (np.zeros((5, 3)), np.zeros((5, 3), dtype=int), {"min_observations": 1}, "min_observations must be"),
    (np.zeros((4, 3)), np.zeros((4, 3), dtype=int), {}, "too few shadows: 4"),
    (np.zeros((6, 3)), np.zeros((6, 3), dtype=int), {"min_observations": 3}, "too few shadows: 6"),
    (np.full((5, 3), np.inf), np.zeros((5, 3), dtype=int), {}, "finite"),
    (np.zeros((5, 3)), np.ones((5, 3), dtype=int), {}, "no \\(sample, shadow\\) pair"),
])
def test_audit_rejects_bad_input(confidences, status, kwargs, message):
    with pytest.raises(ValueError, match=message):
        leave_one_out_audit(confidences, status, **kwargs)


def test_audit_accepts_torch_tensors():
    phi, status = synthetic(seed=5, shift=1.0, shadows=9, samples=50)
    expected = leave_one_out_audit(phi, status)
    got = leave_one_out_audit(torch.from_numpy(phi).float(), torch.from_numpy(status))
    assert got["n_pairs"] == expected["n_pairs"]
    assert got["auc"] == pytest.approx(expected["auc"], abs=1e-3)
