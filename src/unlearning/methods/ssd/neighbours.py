"""What a model retrained without a sub-class would still recognise of it, estimated from training data.

A model retrained without one garment of a department still puts many of its images in that
department, through the siblings that keep the shared label (Fashion-MNIST: 100 % of sneakers
stay footwear, about 36 % of dresses stay "dresses and trousers"); one retrained without one digit
of a pair recognises almost none of it. The hands-free search (``method.alpha=auto``) needs that
share as its target for a sub-class request, from what a method may read: Df and the retained
training images, never test data and never the retrained model.

The estimate here is the simplest learner that, like retraining, never sees Df: a k-nearest-
neighbour vote among retained training images, in pixel space reduced by PCA. The share of Df
whose neighbours vote for the class Df is in is what "learnt from the rest" carries over to Df.
It reads pixels, not the model's features, on purpose: the original model's features were trained
on Df with its department's label, so they place Df beside its siblings whatever retraining would
do (docs/auto_ssd.md, "Not done": on training seed 0 a vote over ``layer2`` features was within 5
points of the retrained model on 7 of 9 garments and 1 of 5 digits, the pixel vote on 8 and 3). On natural images pixel distance
is a much weaker classifier than on grey garments and digits, so there the estimate errs low
(asks for more forgetting than retraining does); it was measured on Fashion-MNIST and digits only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier


@dataclass(frozen=True)
class NeighbourVote:
    """The vote's result: the share of Df its neighbours put in Df's class, and what it was computed on."""

    share: float
    forget_images: int
    retain_images: int
    components: int
    neighbours: int


def neighbour_vote(retain_images: torch.Tensor, retain_classes: torch.Tensor, forget_images: torch.Tensor,
                   forget_classes: torch.Tensor, neighbours: int = 5, components: int = 50,
                   seed: int = 0) -> NeighbourVote:
    """Share of ``forget_images`` whose ``neighbours`` nearest retained images vote for their class.

    Images are flattened and projected on the retained images' first ``components`` principal
    axes (fewer when the images have fewer pixels or there are fewer images), where Euclidean
    distance is cheap and less dominated by pixel noise. ``*_classes`` are what each image counts
    as: labels (SSD) or the original model's predictions (LFSSD, which reads no labels).
    Deterministic for a given ``seed``.
    """
    if len(forget_images) == 0:
        raise ValueError("the neighbour vote needs at least one Df image")
    if len(retain_images) < neighbours:
        raise ValueError(f"the neighbour vote needs at least {neighbours} retained images, got {len(retain_images)}")
    retain = retain_images.flatten(1).double().cpu().numpy()
    forget = forget_images.flatten(1).double().cpu().numpy()
    kept = max(1, min(components, retain.shape[1], len(retain) - 1))
    projection = PCA(n_components=kept, random_state=seed).fit(retain)
    vote = KNeighborsClassifier(n_neighbors=neighbours).fit(projection.transform(retain),
                                                              retain_classes.cpu().numpy())
    predicted = vote.predict(projection.transform(forget))
    share = float(np.mean(predicted == forget_classes.cpu().numpy()))
    return NeighbourVote(share, len(forget), len(retain), kept, neighbours)
