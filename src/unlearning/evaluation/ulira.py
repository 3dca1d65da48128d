"""U-LiRA: a per-example likelihood-ratio audit of inexact unlearning (computational core only).

Hayes et al. (2024), "Inexact unlearning needs more careful evaluations to avoid a false sense
of privacy", adapt LiRA (Carlini et al. 2022, "Membership inference attacks from first
principles") to unlearning. Population-level attacks (one threshold for all samples, as in
:func:`unlearning.evaluation.metrics.membership_inference`) miss that some samples are simply
easier than others; LiRA instead calibrates every sample against its own distribution of
confidences over many shadow models. U-LiRA asks: given a model in which sample ``n`` was trained
on and then unlearned, can one tell it from a model that never saw ``n`` (the retrain-from-scratch
gold standard)? An AUC of 0.5 means it cannot: the unlearned models are indistinguishable from
retrained ones on those samples.

The inputs are K shadow models' logit-scaled confidences on the N training samples and a status
per (shadow, sample): 1 = trained on and then unlearned, 0 = never in that shadow's training set,
-1 = ignored (trained on and kept, or otherwise unusable). Each shadow in turn plays the target
(:func:`leave_one_out_audit`); the Gaussians that calibrate a sample come from the *other*
shadows only, so that the target's own observation never leaks into its reference distribution.

No I/O and no training here: producing the shadows and their confidences is the caller's job.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torchmetrics.functional.classification import binary_auroc

#: Below this many observations per side (per sample), LiRA recommends one variance shared by all
#: samples ("fixed variance"): a per-sample standard deviation from a handful of shadows is too
#: noisy and makes the likelihood ratio blow up on samples whose few observations happen to agree.
GLOBAL_VARIANCE_BELOW = 64

#: Floor of the fitted standard deviations: keeps the ratio finite when all observations of a side
#: are equal (e.g. confidences that saturated), in units of the logit-scaled confidence.
MIN_STD = 1e-3

UNLEARNED, RETRAINED, IGNORED = 1, 0, -1


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``phi = log(p / (1 - p))`` with ``p`` the softmax probability of each sample's true label.

    LiRA works on this scale because it makes the confidences of a sample over shadow models
    roughly Gaussian, while ``p`` itself piles up near 0 and 1. The naive formula rounds ``p`` to
    1 for confident models and returns ``inf``; the identity ``log(p / (1 - p)) = z_y -
    logsumexp_{j != y} z_j`` (the softmax normaliser cancels) never exponentiates a margin, so it
    stays finite and exact for any finite logits.

    Args:
        logits: ``(N, C)`` logits, ``C >= 2``.
        labels: ``(N,)`` integer true labels in ``[0, C)``.

    Returns:
        ``(N,)`` tensor of logit-scaled confidences (float32 at least, float64 if the logits are).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes for p / (1 - p), got {logits.shape[1]}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got [{int(labels.min())}, {int(labels.max())}]")
    z = logits if logits.dtype == torch.float64 else logits.float()
    labels = labels.long().to(z.device)
    true = z.gather(1, labels[:, None]).squeeze(1)
    is_true = torch.zeros_like(z, dtype=torch.bool).scatter_(1, labels[:, None], True)
    others = torch.logsumexp(z.masked_fill(is_true, -math.inf), dim=1)
    return true - others


def _as_numpy(x: ArrayLike | torch.Tensor, dtype: type | None = np.float64) -> np.ndarray:
    """A numpy copy-or-view of ``x``; torch tensors may live on any device."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)


def _row_moments(values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row count, mean and sum of squared deviations of the entries where ``present``.

    Absent entries may hold anything (NaN, inf): they are zeroed before any arithmetic. The
    mean is 0 for a row without entries (its count tells the caller to ignore it).
    """
    x = np.where(present, values, 0.0)
    count = present.sum(axis=1)
    mean = x.sum(axis=1) / np.maximum(count, 1)
    ssd = (np.where(present, x - mean[:, None], 0.0) ** 2).sum(axis=1)
    return count, mean, ssd


def _side_std(count: np.ndarray, ssd: np.ndarray, global_variance: bool, min_std: float) -> np.ndarray:
    """Standard deviation of one side (in or out) for each row, floored at ``min_std``.

    Per row: the unbiased ``sqrt(ssd / (count - 1))``, NaN for rows with fewer than 2 entries.
    Global: the pooled within-row estimate ``sqrt(sum(ssd) / (sum(count) - rows))`` (each row
    spends one degree of freedom on its own mean). This differs on purpose from the reference
    LiRA code, whose ``np.std`` over the whole array also counts the spread *between* samples'
    means and so overstates the noise of each sample.
    """
    if global_variance:
        used = count > 0
        dof = int(count[used].sum()) - int(used.sum())
        var = np.full(count.shape, ssd[used].sum() / dof if dof > 0 else math.nan)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(count >= 2, ssd / (count - 1), math.nan)
    return np.maximum(np.sqrt(var), min_std)  # NaN stays NaN: an unknown spread is not a tiny one


def _gaussian_log_pdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``log N(x; mean, std^2)`` elementwise (numpy, without scipy)."""
    z = (x - mean) / std
    return -0.5 * z * z - np.log(std) - 0.5 * math.log(2.0 * math.pi)


def _log_ratio(target: np.ndarray, moments_in: tuple[np.ndarray, np.ndarray, np.ndarray],
               moments_out: tuple[np.ndarray, np.ndarray, np.ndarray], global_variance: bool,
               min_std: float) -> np.ndarray:
    """The likelihood ratio from each side's (count, mean, ssd); shared by both public entry points."""
    count_in, mean_in, ssd_in = moments_in
    count_out, mean_out, ssd_out = moments_out
    std_in = _side_std(count_in, ssd_in, global_variance, min_std)
    std_out = _side_std(count_out, ssd_out, global_variance, min_std)
    score = _gaussian_log_pdf(target, mean_in, std_in) - _gaussian_log_pdf(target, mean_out, std_out)
    return np.where((count_in > 0) & (count_out > 0), score, math.nan)


def _resolve_global_variance(global_variance: bool | None, count_in: np.ndarray, count_out: np.ndarray) -> bool:
    """LiRA's rule: a global variance unless every sample has enough observations on both sides."""
    if global_variance is not None:
        return bool(global_variance)
    if count_in.size == 0:
        return True
    return bool(min(count_in.min(), count_out.min()) < GLOBAL_VARIANCE_BELOW)


def gaussian_likelihood_ratio(target_phi: ArrayLike | torch.Tensor, in_phi: ArrayLike | torch.Tensor,
                              out_phi: ArrayLike | torch.Tensor, min_std: float = MIN_STD,
                              global_variance: bool | None = None) -> np.ndarray:
    """Parametric LiRA score: ``log N(target; mu_in, sd_in) - log N(target; mu_out, sd_out)``.

    "In" are the sample's confidences under shadows that trained on it and then unlearned it,
    "out" those under shadows that never saw it. Fitting both per sample is what lets LiRA spot a
    sample that stays a little too confident after unlearning even when its absolute confidence
    is unremarkable. A positive score means the target looks more like "unlearned" than like
    "retrained without it".

    Args:
        target_phi: the target model's confidence on each sample: a scalar (one sample) or ``(M,)``.
        in_phi: the "unlearned" observations: ``(S_in,)`` for a scalar target, else ``(M, S_in)``.
            NaN marks a missing observation, so samples may have different numbers of them.
        out_phi: the "retrained" observations, shaped like ``in_phi`` (``S_out`` may differ).
        min_std: floor of the fitted standard deviations (see :data:`MIN_STD`).
        global_variance: pool one standard deviation per side over all ``M`` samples (LiRA's
            "fixed variance") instead of fitting one per sample. ``None`` (default) pools unless
            every sample has at least :data:`GLOBAL_VARIANCE_BELOW` (64) observations on each side,
            as the LiRA paper recommends for few shadow models. The means are always per sample.

    Returns:
        Float64 scores shaped like ``target_phi``. NaN where a sample has no observation on a side,
        or (per-sample variance only) fewer than two.
    """
    target = _as_numpy(target_phi)
    obs_in, obs_out = _as_numpy(in_phi), _as_numpy(out_phi)
    if min_std <= 0:
        raise ValueError(f"min_std must be positive, got {min_std}")
    if target.ndim == 0:
        if obs_in.ndim != 1 or obs_out.ndim != 1:
            raise ValueError("for a scalar target, in_phi and out_phi must be 1-D arrays of observations, "
                             f"got shapes {obs_in.shape} and {obs_out.shape}")
        obs_in, obs_out = obs_in[None, :], obs_out[None, :]
    elif target.ndim == 1:
        for name, obs in (("in_phi", obs_in), ("out_phi", obs_out)):
            if obs.ndim != 2 or obs.shape[0] != target.shape[0]:
                raise ValueError(f"{name} must have shape ({target.shape[0]}, S) for target_phi of shape "
                                 f"{target.shape}, got {obs.shape}")
    else:
        raise ValueError(f"target_phi must be a scalar or 1-D, got shape {target.shape}")
    if np.isinf(obs_in).any() or np.isinf(obs_out).any():
        raise ValueError("in_phi and out_phi must not hold infinite values (use NaN for missing observations); "
                         "compute confidences with logit_scaled_confidence to avoid saturation")
    moments_in = _row_moments(obs_in, ~np.isnan(obs_in))
    moments_out = _row_moments(obs_out, ~np.isnan(obs_out))
    use_global = _resolve_global_variance(global_variance, moments_in[0], moments_out[0])
    score = _log_ratio(target.reshape(-1), moments_in, moments_out, use_global, min_std)
    return score.reshape(target.shape)


def _check_audit_inputs(confidences: np.ndarray, status: np.ndarray, min_observations: int) -> None:
    """Raise ``ValueError`` with the reason when the audit's inputs cannot be used."""
    if confidences.ndim != 2:
        raise ValueError(f"confidences must be 2-D (K shadows, N samples), got shape {confidences.shape}")
    if status.shape != confidences.shape:
        raise ValueError(f"status must have the shape of confidences {confidences.shape}, got {status.shape}")
    if confidences.shape[1] == 0:
        raise ValueError("confidences hold no sample (N = 0)")
    bad = ~np.isin(status, (IGNORED, RETRAINED, UNLEARNED))
    if bad.any():
        values = np.unique(status[bad])[:5].tolist()
        raise ValueError(f"status values must be 1 (unlearned), 0 (retrained without it) or -1 (ignore), got {values}")
    if isinstance(min_observations, bool) or int(min_observations) != min_observations or min_observations < 2:
        raise ValueError(f"min_observations must be an integer >= 2 (a variance needs two), got {min_observations}")
    shadows = confidences.shape[0]
    if shadows < 2 * min_observations + 1:
        raise ValueError(f"too few shadows: {shadows}; leave-one-out needs at least 2 * min_observations + 1 = "
                         f"{2 * min_observations + 1} (the target plus {min_observations} per side)")
    used = status != IGNORED
    if not np.isfinite(confidences[used]).all():
        raise ValueError("confidences must be finite wherever status is not -1 "
                         "(compute them with logit_scaled_confidence to avoid saturation)")


def _balanced_accuracy_at_zero(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean of TPR and TNR when "unlearned" means a positive log-likelihood ratio."""
    called = scores > 0
    return float(0.5 * (called[labels == 1].mean() + (~called[labels == 0]).mean()))


def _best_balanced_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best balanced accuracy over thresholds "unlearned iff score >= t", and that ``t``.

    Optimistic by construction (the threshold is chosen on the scored pairs themselves): it is
    the accuracy an attacker who knew the best threshold would get. Calling nothing (``t = inf``)
    gives 0.5, so the result is never below that.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    true_pos, false_pos = np.cumsum(y == 1), np.cumsum(y == 0)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tpr = true_pos[last_of_tie] / true_pos[-1]
    fpr = false_pos[last_of_tie] / false_pos[-1]
    balanced = 0.5 * (tpr + 1.0 - fpr)
    best = int(np.argmax(balanced))
    if balanced[best] <= 0.5:
        return 0.5, math.inf
    return float(balanced[best]), float(s[last_of_tie][best])


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC with torchmetrics, on ranks scaled to [0, 1].

    torchmetrics applies a sigmoid to predictions outside [0, 1]; in float32 that rounds every
    score above about 17 to 1.0 and would turn distinct likelihood ratios into ties. The AUC
    depends only on the order of the scores, which ranks keep exactly (ties included).
    """
    unique, rank = np.unique(scores, return_inverse=True)
    preds = torch.from_numpy(rank.astype(np.float64) / max(len(unique) - 1, 1))
    return float(binary_auroc(preds, torch.from_numpy(labels.astype(np.int64))))


def leave_one_out_audit(confidences: ArrayLike | torch.Tensor, status: ArrayLike | torch.Tensor,
                        min_observations: int = 2, min_std: float = MIN_STD,
                        global_variance: bool | None = None) -> dict[str, Any]:
    """U-LiRA over shadow models: each shadow in turn is the target, the others calibrate it.

    For target shadow ``k`` and each sample ``n`` with ``status[k, n]`` in {0, 1}, the "unlearned"
    and "retrained" Gaussians of ``n`` are fitted to the observations of ``n`` in the *other*
    shadows (skipping ``n`` when a side has fewer than ``min_observations``), and
    ``gaussian_likelihood_ratio`` scores ``confidences[k, n]``; the pair's label is ``status[k, n]``.
    Reusing every shadow as a target gives K times more scored pairs than a single held-out target
    at no extra training cost. With a global variance, the pooled standard deviation of target
    ``k`` comes from the samples scored for ``k``, again from the other shadows only. Entries with
    status -1 are never read.

    Args:
        confidences: ``(K, N)`` logit-scaled confidences (:func:`logit_scaled_confidence`).
        status: ``(K, N)`` integers: 1 unlearned, 0 retrained without the sample, -1 ignore.
        min_observations: fewest observations per side (>= 2) for a pair to be scored.
        min_std: floor of the fitted standard deviations.
        global_variance: as in :func:`gaussian_likelihood_ratio`; ``None`` pools unless every scored
            pair has at least 64 observations on each side. One choice holds for all targets.

    Returns:
        A dict with

        - ``auc``: the attack's ROC AUC; 0.5 = unlearned models indistinguishable from retrained
          ones, 1 = always told apart. NaN if the scored pairs lack one of the labels.
        - ``balanced_accuracy``: the best balanced accuracy over thresholds (optimistic: chosen on
          the same pairs), with ``threshold`` the score ``t`` of the rule "unlearned iff score >= t".
        - ``balanced_accuracy_at_zero``: balanced accuracy of the rule "unlearned iff score > 0",
          the likelihood-ratio test with equal priors, which needs no tuning.
        - ``n_pairs``, ``n_unlearned``, ``n_retrained``: numbers of scored (sample, shadow) pairs.
        - ``global_variance``: whether one pooled standard deviation per side was used.
        - ``per_example_score``: ``(N,)`` mean score of each sample over the shadows that scored it
          (NaN if none), to find the samples that unlearning leaves most exposed;
          ``per_example_count``: ``(N,)`` how many shadows scored it.
        - ``scores``, ``labels``, ``shadow``, ``example``: ``(n_pairs,)`` arrays of every scored
          pair, ordered by shadow then sample.
    """
    phi = _as_numpy(confidences)
    state = _as_numpy(status, dtype=None)
    _check_audit_inputs(phi, state, min_observations)
    shadows, samples = phi.shape
    sides = {label: state == label for label in (UNLEARNED, RETRAINED)}
    # Centre each side of each sample on its mean over all shadows: leaving one shadow out then
    # only subtracts that shadow's small deviation, so the sums below lose no precision.
    stats = {}
    for label, present in sides.items():
        count, mean, _ = _row_moments(phi.T, present.T)
        dev = np.where(present, phi - mean, 0.0)
        stats[label] = (present.astype(np.int64), count, mean, dev, dev.sum(axis=0), (dev**2).sum(axis=0))

    def leave_out(label: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(count, mean, ssd) of each sample's ``label`` side without shadow ``k``."""
        present, count, mean, dev, sum1, sum2 = stats[label]
        n = count - present[k]
        s1, s2 = sum1 - dev[k], sum2 - dev[k] ** 2
        safe = np.maximum(n, 1)
        return n, mean + s1 / safe, np.maximum(s2 - s1 * s1 / safe, 0.0)

    targets = []
    for k in range(shadows):
        moments_in, moments_out = leave_out(UNLEARNED, k), leave_out(RETRAINED, k)
        scored = (state[k] != IGNORED) & (moments_in[0] >= min_observations) & (moments_out[0] >= min_observations)
        targets.append((k, np.flatnonzero(scored), moments_in, moments_out))
    n_in = np.concatenate([m_in[0][idx] for _, idx, m_in, _ in targets])
    n_out = np.concatenate([m_out[0][idx] for _, idx, _, m_out in targets])
    if n_in.size == 0:
        raise ValueError(f"no (sample, shadow) pair has at least {min_observations} observations per side "
                         "in the other shadows; train more shadows or lower min_observations")
    use_global = _resolve_global_variance(global_variance, n_in, n_out)

    scores, labels, shadow_ids, example_ids = [], [], [], []
    for k, idx, moments_in, moments_out in targets:
        if idx.size == 0:
            continue
        pick = tuple(m[idx] for m in moments_in), tuple(m[idx] for m in moments_out)
        scores.append(_log_ratio(phi[k, idx], *pick, use_global, min_std))
        labels.append(state[k, idx].astype(np.int64))
        shadow_ids.append(np.full(idx.size, k))
        example_ids.append(idx)
    score, label = np.concatenate(scores), np.concatenate(labels)
    shadow, example = np.concatenate(shadow_ids), np.concatenate(example_ids)

    per_count = np.bincount(example, minlength=samples)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_score = np.bincount(example, weights=score, minlength=samples) / per_count
    both = (label == 1).any() and (label == 0).any()
    best, threshold = _best_balanced_accuracy(score, label) if both else (math.nan, math.nan)
    return {
        "auc": _auroc(score, label) if both else math.nan,
        "balanced_accuracy": best,
        "threshold": threshold,
        "balanced_accuracy_at_zero": _balanced_accuracy_at_zero(score, label) if both else math.nan,
        "n_pairs": int(score.size),
        "n_unlearned": int((label == 1).sum()),
        "n_retrained": int((label == 0).sum()),
        "global_variance": use_global,
        "per_example_score": per_score,
        "per_example_count": per_count,
        "scores": score,
        "labels": label,
        "shadow": shadow,
        "example": example,
    }
