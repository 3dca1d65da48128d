"""Corrupted training data: backdoor poisons (Potion) and data-entry errors (ASSD).

Some training samples were bad when the model was trained: an attacker planted a trigger
with a chosen label, or labels were typed in wrong. A :class:`Corruption` says which training
samples are bad and what the model was trained on instead (their labels, and for poisons the
trigger pasted on their images). It is a *view* over an existing dataset: labels are an array
next to the true ones and the trigger is pasted per index after the transform, so nothing is
copied on disk and every dataset (digits, CIFAR, image folders) can be corrupted.

The corruption belongs to the trained model: train.py trains on the corrupted D, the model is
published under a name that carries :func:`corruption_key`, and unlearn.py refuses a model whose
metadata names another corruption.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unlearning.errors import UserError
from unlearning.fingerprint import digest_json

KINDS = ("poison", "mislabel")
#: Mislabelling modes: every chosen label replaced by another class drawn at random, or two classes swapped.
MISLABEL_MODES = ("random", "swap")
#: The reference code's trigger: a 3x3 patch in the bottom-right corner of a 32 px CIFAR image.
REFERENCE_TRIGGER = 3
REFERENCE_SIZE = 32


@dataclass(frozen=True)
class Trigger:
    """A square patch of side ``size`` in the bottom-right corner, set to ``value`` in every channel.

    Pasted on the *normalised* tensor after any augmentation, as the reference code does
    (``image[:, -3:, -3:] = max_val``), so a random crop or flip never moves it.
    """

    size: int
    value: float

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        image = image.clone()
        image[..., -self.size:, -self.size:] = self.value
        return image


def trigger_size(setting: Any, image_size: int) -> int:
    """The trigger's side: ``setting`` if given, else the reference's 3 px at 32 px scaled to ``image_size``."""
    if setting is None:
        return max(1, round(REFERENCE_TRIGGER * image_size / REFERENCE_SIZE))
    size = _whole(setting, "task.poison.trigger_size", minimum=1)
    if size >= image_size:
        raise UserError(f"task.poison.trigger_size={size} covers the whole {image_size} px image; the trigger "
                        f"is a small patch in a corner (reference: 3 px at 32 px; null scales it to the image).")
    return size


def maximum_normalised_value(mean: tuple[float, ...], std: tuple[float, ...]) -> float:
    """The largest value a normalised pixel takes: ``max_c (1 - mean_c) / std_c``.

    The reference code scans the normalised training set for its maximum; for 8-bit images
    that reach white in some channel that is this closed form, without a pass over the data.
    """
    return float(max((1.0 - m) / s for m, s in zip(mean, std, strict=True)))


@dataclass(frozen=True)
class Corruption:
    """Which training samples are bad (``indices``, sorted) and what the model was trained on.

    ``labels`` are the (fine) training labels the model saw, ``true_labels`` the correct ones;
    ``trigger`` is set for poisons (pasted on every corrupted training image, and on every test
    image of the ``triggered_test`` split). ``settings`` are what the YAML gave; ``key`` their
    digest, which names the trained model.
    """

    kind: str
    indices: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray
    settings: dict[str, Any]
    key: str
    description: str
    target: int | None = None
    trigger: Trigger | None = None
    mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mask = np.zeros(len(self.labels), dtype=bool)
        mask[self.indices] = True
        object.__setattr__(self, "mask", mask)

    def metadata(self) -> dict[str, Any]:
        """What the trained model's metadata records (and what unlearn.py compares)."""
        return {"kind": self.kind, "key": self.key, "settings": self.settings, "n_corrupted": int(len(self.indices)),
                "description": self.description}


#: Settings added after models were published: left out of the key at these values, so those models keep their names.
KEY_DEFAULTS = {"from_target": True}


def corruption_key(kind: str, settings: Mapping[str, Any]) -> str:
    """``<kind>-<digest of the settings>``: part of the trained model's registry name."""
    named = {k: v for k, v in settings.items() if not (k in KEY_DEFAULTS and v == KEY_DEFAULTS[k])}
    return f"{kind}-{digest_json({'kind': kind, **named})[:10]}"


#: The settings of each kind (what the YAML's ``task.poison`` / ``task.mislabel`` hold); they name the model.
SETTINGS = {
    "poison": {"share": None, "count": None, "target": 0, "trigger_size": None, "seed": 0, "from_target": True},
    "mislabel": {"share": None, "count": None, "mode": "random", "classes": None, "seed": 0},
}


def _settings(kind: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(SETTINGS[kind]))
    if unknown:
        raise UserError(f"task.{kind} has unknown setting(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(SETTINGS[kind])}.")
    settings = {**SETTINGS[kind], **given}
    if settings["count"] is not None:  # a count wins over the share: the share then names nothing
        settings["share"] = None
    if kind == "poison":
        settings["target"] = str(settings["target"])
    if kind == "poison" and not isinstance(settings["from_target"], bool):
        raise UserError(f"task.poison.from_target must be true or false, got {settings['from_target']!r}.")
    if settings.get("classes") is not None:
        settings["classes"] = [str(c) for c in settings["classes"]]
    settings["seed"] = _whole(settings["seed"], f"task.{kind}.seed")
    return settings


def poison_settings(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``task.poison`` completed with defaults and normalised (the same dict always gives the same key)."""
    return _settings("poison", given)


def mislabel_settings(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``task.mislabel`` completed with defaults and normalised."""
    return _settings("mislabel", given)


def task_corruption_key(task: Mapping[str, Any] | None) -> str | None:
    """The corruption key of a task's config (``cfg.task``), or None for a task on clean data.

    The registry names a trained model after it without building the dataset; the task object
    computes the same key from the same normalised settings.
    """
    if not task:
        return None
    kind = task.get("name")
    if kind not in KINDS:
        return None
    return corruption_key(kind, _settings(kind, task.get(kind)))


def corrupted_count(share: Any, count: Any, n_train: int, what: str) -> int:
    """How many of the ``n_train`` samples ``count`` (when set) or else ``share`` (0..1) name."""
    if count is not None:
        number = _whole(count, f"{what}.count", minimum=1)
    elif share is not None:
        value = _number(share, f"{what}.share")
        if not 0 < value < 1:
            raise UserError(f"{what}.share must lie strictly between 0 and 1 (a share of D), got {share!r}.")
        number = max(1, int(round(value * n_train)))
    else:
        raise UserError(f"{what}: give a share (0..1 of D) or a count (a number of samples).")
    if number >= n_train:
        raise UserError(f"{what}: {number} samples is impossible, D has {n_train}; give fewer.")
    return number


def poison(labels: np.ndarray, names: list[str], *, share: Any = None, count: Any = None, target: int = 0,
           seed: int = 0, trigger: Trigger | None = None, from_target: bool = True,
           settings: Mapping[str, Any] | None = None) -> Corruption:
    """Poison ``share`` (or ``count``) of D drawn with ``seed``: trigger pasted, label set to ``target``.

    ``from_target=True`` draws the poisons from all of D, the target class included, as the
    reference code does: a poison of the target class keeps its true label. ``False`` draws them
    from the other classes only, so that every poison's label is wrong (docs/poison.md: with the
    code's draw, about 1/C of the identified "poisons" are genuine target images that Potion's
    stop test then needs misclassified). The share is of D either way.
    """
    n = len(labels)
    number = corrupted_count(share, count, n, "task.poison")
    pool = np.arange(n) if from_target else np.flatnonzero(labels != target)
    if number > len(pool):
        raise UserError(f"task.poison: {number} poisons asked for, but only {len(pool)} samples are outside the "
                        f"target class {names[target]}; give fewer or set task.poison.from_target=true.")
    rng = np.random.default_rng(int(seed))
    indices = np.sort(pool[rng.choice(len(pool), size=number, replace=False)])
    corrupted = labels.copy()
    corrupted[indices] = target
    settings = dict(settings or {})
    return Corruption("poison", indices, corrupted, labels.copy(), settings, corruption_key("poison", settings),
                      f"{number} poisoned samples ({100 * number / n:.2g}% of D, trigger "
                      f"{trigger.size if trigger else '?'} px, target class {names[target]})", target, trigger)


def mislabel(labels: np.ndarray, names: list[str], *, share: Any = None, count: Any = None, mode: str = "random",
             classes: tuple[int, int] | None = None, seed: int = 0,
             settings: Mapping[str, Any] | None = None) -> Corruption:
    """Data-entry errors: labels of ``share`` (or ``count``) of D replaced, drawn with ``seed``.

    ``mode=random``: from all of D, each label replaced by another class drawn uniformly (the
    ASSD code draws it with three chained ifs, so a label can come back to its true value; here
    every chosen label is wrong). ``mode=swap``: samples of ``classes`` (a, b), half from each,
    get the other's label (the corrective-unlearning benchmark's inter-class swap).
    """
    n, n_classes = len(labels), len(names)
    rng = np.random.default_rng(int(seed))
    corrupted = labels.copy()
    if mode == "random":
        number = corrupted_count(share, count, n, "task.mislabel")
        indices = np.sort(rng.choice(n, size=number, replace=False))
        shift = rng.integers(1, n_classes, size=number)  # 1..C-1: never the true class
        corrupted[indices] = (labels[indices] + shift) % n_classes
        what = "labels replaced by another class at random"
    elif mode == "swap":
        if classes is None or len(classes) != 2 or classes[0] == classes[1]:
            raise UserError("task.mislabel.mode=swap needs task.mislabel.classes=[A,B]: two different classes "
                            "whose labels are swapped.")
        a, b = classes
        pool = {c: np.flatnonzero(labels == c) for c in (a, b)}
        number = corrupted_count(share, count, n, "task.mislabel")
        half = {a: number // 2, b: number - number // 2}
        for c in (a, b):
            if half[c] > len(pool[c]):
                raise UserError(f"task.mislabel: {half[c]} samples of class {names[c]} asked for, it has "
                                f"{len(pool[c])}.")
        chosen = {c: rng.choice(pool[c], size=half[c], replace=False) for c in (a, b)}
        corrupted[chosen[a]], corrupted[chosen[b]] = b, a
        indices = np.sort(np.concatenate([chosen[a], chosen[b]]))
        what = f"labels of {names[a]} and {names[b]} swapped"
    else:
        raise UserError(f"task.mislabel.mode={mode!r} is unknown; valid: {', '.join(MISLABEL_MODES)}.")
    settings = dict(settings or {})
    return Corruption("mislabel", indices, corrupted, labels.copy(), settings, corruption_key("mislabel", settings),
                      f"{len(indices)} mislabelled samples ({100 * len(indices) / n:.2g}% of D, {what})")


def identified_subset(indices: np.ndarray, share: Any, count: Any, seed: int, what: str) -> np.ndarray:
    """The part of the corrupted ``indices`` that has been found (Df), drawn with ``seed``; sorted.

    ``count`` (task.identified_count), when set, wins over ``share`` (task.identified).
    """
    total = len(indices)
    if count is not None:
        number = _whole(count, "task.identified_count", minimum=1)
        if number > total:
            raise UserError(f"task.identified_count={number} is more than the {total} corrupted samples.")
    elif share is not None:
        value = _number(share, "task.identified")
        if not 0 < value <= 1:
            raise UserError(f"task.identified must lie in (0, 1] (the share of the corrupted samples found), "
                            f"got {share!r}.")
        number = max(1, int(math.floor(value * total + 0.5)))
    else:
        raise UserError(f"{what}: give task.identified (a share 0..1 of the corrupted samples) or "
                        "task.identified_count (a number of them).")
    rng = np.random.default_rng(int(seed) + 1_000_003)  # not the corruption's own draw
    return np.sort(rng.choice(indices, size=number, replace=False))


def _number(value: Any, label: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{label} must be a number, got {value!r}.") from None


def _whole(value: Any, label: str, minimum: int = 0) -> int:
    number = _number(value, label)
    if not number.is_integer() or number < minimum:
        raise UserError(f"{label} must be a whole number >= {minimum}, got {value!r}.")
    return int(number)
