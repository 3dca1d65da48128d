"""A multi-feature membership attack (the SalUn / Song & Mittal feature set), scored by AUC.

The paper's attack (:func:`unlearning.evaluation.metrics.membership_inference_from_logits`)
reads one feature, the softmax entropy; Hayes et al. (2024) show that such weak attacks
make inexact unlearning look better than it is. This attack reads five per-sample
features of the softmax and the true label: correctness, confidence in the true label,
entropy, modified entropy (Song & Mittal 2021) and cross-entropy loss, and fits a
gradient-boosted classifier (scikit-learn) on retained-train samples (members) against test
samples (non-members). It reports

- ``mia_strong``: the fraction of Df-train that the attack calls member (as the paper's MIA);
- ``mia_auc``: the AUC (torchmetrics) of the attack's scores on Df-train against held-out
  non-members that the attack was not fitted on. For full-class and sub-class forgetting the
  held-out non-members are Df-test (same classes as Df), for random forgetting a seeded half of
  the test set. 0.5: Df looks like data the model never saw; a model that never saw Df
  (the retrained reference) is the yardstick.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from torchmetrics.functional.classification import binary_auroc

FEATURES = ("correct", "confidence", "entropy", "modified_entropy", "loss")
_EPS = 1e-12


def attack_features(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(N, 5) float64: correctness, p_y, entropy, modified entropy, loss of each sample."""
    log_p = F.log_softmax(logits.double(), dim=1)
    p = log_p.exp()
    labels = labels.long()
    p_y = p.gather(1, labels[:, None]).squeeze(1)
    log_p_y = log_p.gather(1, labels[:, None]).squeeze(1)
    entropy = -(p * log_p).sum(dim=1)
    # Song & Mittal: -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j)
    others = p.scatter(1, labels[:, None], 0.0)
    modified = -(1 - p_y) * log_p_y - (others * torch.log1p(-others.clamp(max=1 - _EPS))).sum(dim=1)
    correct = (logits.argmax(dim=1) == labels).double()
    return torch.stack([correct, p_y, entropy, modified, -log_p_y], dim=1).numpy()


def held_out_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded half/half split of ``range(n)``: (fit part, held-out part)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def strong_membership_attack(member_logits: torch.Tensor, member_labels: torch.Tensor,
                             nonmember_logits: torch.Tensor, nonmember_labels: torch.Tensor,
                             forget_logits: torch.Tensor, forget_labels: torch.Tensor,
                             heldout_logits: torch.Tensor, heldout_labels: torch.Tensor,
                             seed: int = 0) -> dict[str, float]:
    """Fit the attack on members vs non-members; score Df (forget) against held-out non-members.

    Members are subsampled (seeded) to the number of non-members, so the attack's prior is 1/2.
    Returns ``mia_strong`` (fraction of Df called member) and ``mia_auc``; NaN where a set is empty.
    """
    nan = {"mia_strong": math.nan, "mia_auc": math.nan}
    if min(len(member_logits), len(nonmember_logits), len(forget_logits)) == 0:
        return nan
    rng = np.random.default_rng(seed)
    members = attack_features(member_logits, member_labels)
    nonmembers = attack_features(nonmember_logits, nonmember_labels)
    if len(members) > len(nonmembers):
        members = members[np.sort(rng.choice(len(members), len(nonmembers), replace=False))]
    x = np.concatenate([members, nonmembers])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = HistGradientBoostingClassifier(max_iter=100, max_depth=3, learning_rate=0.1, random_state=seed)
    attack.fit(x, y)
    forget_scores = attack.predict_proba(attack_features(forget_logits, forget_labels))[:, 1]
    result = {"mia_strong": float((forget_scores > 0.5).mean()), "mia_auc": math.nan}
    if len(heldout_logits):
        heldout_scores = attack.predict_proba(attack_features(heldout_logits, heldout_labels))[:, 1]
        scores = torch.as_tensor(np.concatenate([forget_scores, heldout_scores]))
        truth = torch.cat([torch.ones(len(forget_scores)), torch.zeros(len(heldout_scores))]).long()
        result["mia_auc"] = float(binary_auroc(scores, truth))
    return result
