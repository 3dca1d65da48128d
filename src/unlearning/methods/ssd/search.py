"""Hands-free SSD/LFSSD: pick how much to dampen per request, from the model, Df and a retain sample.

SSD's selection weighting alpha is brittle: on one model the alpha that forgets one class
cleanly collapses another and leaves a third untouched (see docs/auto_ssd.md for the
measurements). This module searches alpha per request instead, using only what a real
request has: the importances SSD computes anyway, the forget set Df, and a small seeded
sample of the retained *training* data. It never looks at test data.

Every trial restores the original weights, dampens with one alpha and measures two
label-free numbers with forward passes only (no importance is recomputed):

* ``forget_kept``: the fraction of Df samples whose prediction is still the original
  model's prediction (for full-class forgetting this is Df-train accuracy, near 1 before);
* ``retain_changed``: the fraction of the retain sample whose prediction changed.

The search wants ``forget_kept <= forget_target`` (forgotten) with ``retain_changed <=
retain_tolerance`` (nothing else disturbed), and prefers the largest alpha that does it
(the fewest parameters changed). Three choices make the search well posed:

1. **Dampening scope.** Only the deepest ``scope`` fraction of the parameter tensors (in
   ``named_parameters`` order, i.e. forward order) is eligible, widened step by step
   (``scopes``) only when the target cannot be met. Dampening an early filter changes the
   input of everything after it, for every class; its squared mini-batch gradient does not
   see that fan-out, so early-layer selections are what collapses the retained classes.
2. **lambda tied to alpha** (``lambda = lambda_ratio * alpha``; the paper's 1 at alpha 10
   is ratio 0.1). A global rescaling of imp_Df (LFSSD on some classes has all importances
   ~10x too high) then only moves the best alpha, it does not change how hard the
   selected parameters are hit, so one search covers every request.
3. **Bisection on log alpha** between ``alpha_max`` (little dampening) and ``alpha_min``:
   forgetting grows as alpha falls, so the boundary is found in a handful of trials.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from unlearning.evaluation.predictions import predict
from unlearning.methods.ssd.core import apply_dampening, restore, snapshot

AUTO = "auto"
#: imp_D the search compares imp_Df with: over batches of one class each, or the paper's mixed batches.
REFERENCES = ("by-class", "mixed")
#: Tasks whose forget target can come from validation data: a model retrained without Df still
#: classifies Df like unseen data (random samples) or through its siblings (a sub-class).
UNSEEN_TARGET_TASKS = ("random", "subclass")
#: Tasks whose forget target can come from a nearest-neighbour vote among retained images
#: (:mod:`unlearning.methods.ssd.neighbours`): only a sub-class has relatives left in Dr.
NEIGHBOUR_TARGET_TASKS = ("subclass",)


def is_auto(alpha: Any) -> bool:
    """True when the configured alpha asks for the automatic search."""
    return isinstance(alpha, str) and alpha.strip().lower() == AUTO


@dataclass(frozen=True)
class AutoSettings:
    """What the search aims for and how far it may go. Defaults are one configuration for all requests.

    Out-of-range values raise ValueError naming the setting (a config's mistakes fail when the
    policy is built, before any work)."""

    forget_target: float = 0.02        # Df predictions left as before (fraction) to count as forgotten
    retain_tolerance: float = 0.02     # retain-sample predictions allowed to change (fraction)
    alpha_min: float = 0.1            # first trial: sqrt(0.1 * 1000) = 10, the paper's alpha
    alpha_max: float = 1000.0
    lambda_ratio: float = 0.1          # lambda = lambda_ratio * alpha (paper: 1 at alpha 10)
    scopes: tuple[float, ...] = (0.3, 1.0)  # deepest fraction of parameter tensors eligible, widened in turn
    precision: float = 1.25            # stop bisecting when alpha_hi / alpha_lo <= precision
    max_trials: int = 30
    max_steps: int = 3                 # >1: dampen in steps, imp_Df recomputed in between (see AutoSearch)
    retain_samples: int = 256          # seeded sample of Dr-train used by the guard
    forget_samples: int = 256         # at most this many Df samples are probed per trial
    seed: int = 0
    # Extra work the search may do, as a multiple of a fixed-alpha run's importance pass
    # (forward+backward over D and Df, counted as 3 forwards a sample): 2.0 keeps the whole
    # run within about 3x a fixed-alpha SSD run at any image size.
    max_cost: float = 2.0
    # imp_D for the search: "by-class" = over batches of one class each (SSD: label; LFSSD:
    # predicted class), "mixed" = the paper's imp_D (D in index order, shared with fixed-alpha runs).
    reference: str = "by-class"
    # Tasks whose forget target is not ``forget_target`` but what retraining leaves: the original
    # model's accuracy on validation images like Df's (random: all of them; sub-class, opt-in: that
    # sub-class's), which it never trained on (SearchedAlpha.unseen_target). Needs
    # min_validation_images of them. Sub-class is not a default: a model retrained without a digit
    # forgets it almost entirely, so that target asks for far too little there (docs/auto_ssd.md).
    target_from_validation: tuple[str, ...] = ("random",)
    min_validation_images: int = 20
    # Tasks whose target is the share of Df that a k-nearest-neighbour vote among retained training
    # images (pixels, PCA) puts in Df's class: what a learner that never saw Df carries over to it
    # through the siblings (unlearning.methods.ssd.neighbours; docs/auto_ssd.md, step 8). A task also
    # named in target_from_validation takes that target instead (the opt-in wins over the default).
    target_from_neighbours: tuple[str, ...] = ("subclass",)
    neighbours: int = 5                # k of the vote
    neighbour_components: int = 50     # principal axes of the retained images' pixels the vote measures in
    neighbour_samples: int = 5000      # at most this many retained images vote (a seeded sample)
    # With that target, the weight of the sub-class's validation images (min_validation_images of them,
    # else 0) in "Df kept", beside the Df probe: both are unseen to a retrained model (Probe).
    unseen_weight: float = 0.5
    # With that target the search aims at it (AutoSearch's aim): met within this many (fraction) of Df kept.
    aim_tolerance: float = 0.05

    def __post_init__(self) -> None:
        scopes = self.scopes if isinstance(self.scopes, list | tuple) else [self.scopes]
        object.__setattr__(self, "scopes", tuple(float(scope) for scope in scopes))  # YAML gives a list
        for name in ("target_from_validation", "target_from_neighbours"):  # one task name or a list of them
            tasks = getattr(self, name)
            tasks = [tasks] if isinstance(tasks, str) else list(tasks or ())
            object.__setattr__(self, name, tuple(str(task) for task in tasks))
        checks = [
            ("forget_target", 0 <= self.forget_target < 1),
            ("retain_tolerance", 0 <= self.retain_tolerance < 1),
            ("alpha_min", 0 < self.alpha_min < self.alpha_max),
            ("lambda_ratio", self.lambda_ratio > 0),
            ("scopes", len(self.scopes) > 0 and all(0 < s <= 1 for s in self.scopes)),
            ("precision", self.precision > 1),
            ("max_trials", self.max_trials >= 2),
            ("max_steps", self.max_steps >= 1),
            ("retain_samples", self.retain_samples >= 1),
            ("forget_samples", self.forget_samples >= 1),
            ("max_cost", self.max_cost > 0),
            ("reference", self.reference in REFERENCES),
            ("target_from_validation", set(self.target_from_validation) <= set(UNSEEN_TARGET_TASKS)),
            ("min_validation_images", self.min_validation_images >= 1),
            ("target_from_neighbours", set(self.target_from_neighbours) <= set(NEIGHBOUR_TARGET_TASKS)),
            ("neighbours", self.neighbours >= 1),
            ("neighbour_components", self.neighbour_components >= 1),
            ("neighbour_samples", self.neighbour_samples >= self.neighbours),
            ("unseen_weight", 0 <= self.unseen_weight <= 1),
            ("aim_tolerance", 0 <= self.aim_tolerance < 1),
        ]
        choices = {"reference": REFERENCES, "target_from_validation": UNSEEN_TARGET_TASKS,
                   "target_from_neighbours": NEIGHBOUR_TARGET_TASKS}
        for name, ok in checks:
            if not ok:
                valid = f" (valid: {', '.join(choices[name])})" if name in choices else ""
                raise ValueError(f"SSD auto setting {name}={getattr(self, name)!r} is out of range{valid}")


@dataclass
class Probe:
    """Forward-only measurements of a trial on a Df sample and a retain sample (training data only).

    ``unseen_images`` (optional): validation images of a sub-class, which no model trained on. A model
    retrained without the sub-class treats Df-train and such images alike, while dampening the original
    hits them harder than the memorised Df-train (on Fashion-MNIST's T-shirt: 88 % of Df-train, 80 %
    of the unseen T-shirts still called tops); with them, ``forget_kept`` is the ``unseen_weight``-
    weighted mean of the share of the Df probe that keeps its prediction and the share of the unseen
    images put in Df's class (the class the original gives most of the Df probe: no label is read),
    so a target is met between the two instead of by Df-train alone.
    """

    forget_images: torch.Tensor
    retain_images: torch.Tensor
    batch_size: int = 64   # faster than one large batch on CPUs (docs/auto_ssd.md, "Cost")
    unseen_images: torch.Tensor | None = None
    unseen_weight: float = 0.0
    forget_reference: torch.Tensor = field(init=False)
    retain_reference: torch.Tensor = field(init=False)
    unseen_class: int | None = field(init=False, default=None)

    @property
    def size(self) -> int:
        """Images one trial predicts (its cost in sample-forwards)."""
        return len(self.forget_images) + len(self.retain_images) + (
            len(self.unseen_images) if self.unseen_images is not None else 0)

    def calibrate(self, model: nn.Module) -> None:
        """Record the original model's predictions, the reference every trial is compared with."""
        self.forget_reference = self.predictions(model, self.forget_images)
        self.retain_reference = self.predictions(model, self.retain_images)
        if self.unseen_images is not None:
            self.unseen_class = int(torch.mode(self.forget_reference).values) if len(self.forget_reference) else None

    def predictions(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Predicted classes of ``images`` (:func:`predicted_classes`) in batches of the probe's size."""
        return predicted_classes(model, images, self.batch_size)

    def measure(self, model: nn.Module) -> dict[str, float]:
        forget = self.predictions(model, self.forget_images)
        retain = self.predictions(model, self.retain_images)
        kept = float((forget == self.forget_reference).float().mean())
        measured = {"forget_kept": kept, "retain_changed": float((retain != self.retain_reference).float().mean())}
        if self.unseen_images is not None:
            unseen = float((self.predictions(model, self.unseen_images) == self.unseen_class).float().mean())
            measured.update(forget_kept=(1 - self.unseen_weight) * kept + self.unseen_weight * unseen,
                            train_kept=kept, unseen_kept=unseen)
        return measured


def scoped(importance: Mapping[str, torch.Tensor], names: Sequence[str], scope: float) -> dict[str, torch.Tensor]:
    """The entries of ``importance`` for the deepest ``scope`` fraction of ``names`` (forward order)."""
    keep = names[len(names) - max(1, math.ceil(scope * len(names))):]
    return {name: importance[name] for name in keep if name in importance}


@dataclass
class Trial:
    scope: float
    alpha: float
    lambda_: float
    forget_kept: float
    retain_changed: float
    parameters_changed: int
    step: int = 0
    train_kept: float | None = None    # with unseen images (sub-class): the two shares forget_kept weighs
    unseen_kept: float | None = None

    def forgotten(self, settings: AutoSettings) -> bool:
        return self.forget_kept <= settings.forget_target

    def safe(self, settings: AutoSettings) -> bool:
        return self.retain_changed <= settings.retain_tolerance


class AutoSearch:
    """Finds, per request, the alpha (and scope) that forgets Df without disturbing the retain sample.

    With ``refresh_forget`` (a function computing imp_Df on the model as it is now) and
    ``max_steps > 1``, a request that no single dampening forgets within the guard is
    handled in steps: the safe trial that forgot most is kept, imp_Df is recomputed on the
    dampened model, and the search runs again from there. The guard always compares with
    the *original* model's predictions, so the collateral of all steps adds up.
    """

    def __init__(self, settings: AutoSettings | None = None, importance_work: float | None = None,
                 progress: Any = None, aim: bool = False):
        """``importance_work``: the fixed-alpha run's importance pass in sample-forwards
        (3 * (|D| + |Df|)); the search spends at most ``max_cost`` times that. None: no limit.
        ``progress``: a tqdm-like bar advanced once per trial (None: silent).

        ``aim``: the target is an estimate of what retraining leaves (a sub-class's neighbour vote), to
        be met, not passed: of the safe trials the one whose ``forget_kept`` is closest to it is chosen,
        reached when within ``aim_tolerance``. Without it, the target is a ceiling ("forgotten" = at or
        below it) and the largest alpha under it wins. Near a target of 1 the two differ most: one
        alpha step can flip a quarter of Df, and "under the ceiling" then takes the flip."""
        self.settings = settings or AutoSettings()
        self.progress = progress
        self.aim = aim
        self.trials: list[Trial] = []
        self.importance_work = importance_work
        self.budget = math.inf if importance_work is None else self.settings.max_cost * importance_work
        self.spent = 0.0
        self._trial_cost = 0.0

    def _affordable(self, cost: float | None = None) -> bool:
        """Whether one more trial (or ``cost`` sample-forwards) fits both the trial and the work budget."""
        cost = self._trial_cost if cost is None else cost
        return len(self.trials) < self.settings.max_trials and self.spent + cost <= self.budget

    def run(
        self,
        model: nn.Module,
        reference: Mapping[str, torch.Tensor],
        forget: Mapping[str, torch.Tensor],
        probe: Probe,
        agree: Callable[[Any], Any] = lambda choice: choice,
        refresh_forget: Callable[[nn.Module], Mapping[str, torch.Tensor]] | None = None,
        refresh_cost: float = 0.0,
    ) -> dict[str, Any]:
        """Leave ``model`` dampened with the chosen trial(s); return the choices for results.json.

        ``agree`` maps this process's choice to the one every process applies (under DDP:
        rank 0's, broadcast), so replicas stay identical even if float noise differed.
        """
        start = time.perf_counter()
        s = self.settings
        names = [name for name, _ in model.named_parameters()]
        probe.calibrate(model)
        self._trial_cost = float(probe.size)
        self.spent += self._trial_cost
        steps: list[Trial] = []
        reached = False
        for step in range(s.max_steps):
            base = snapshot(model)
            chosen = None
            for scope in s.scopes:
                chosen = self._search_scope(model, base, scoped(reference, names, scope), forget, probe, scope, step)
                if chosen is not None or not self._affordable():
                    break
            reached = chosen is not None
            last_step = (reached or step + 1 >= s.max_steps or refresh_forget is None
                         or not self._affordable(refresh_cost + self._trial_cost))
            chosen = chosen or self._best_effort(step, steps[-1].forget_kept if steps else 1.0)
            # aiming, a step that went past the estimate ends the search: another step only forgets more
            last_step = last_step or (self.aim and chosen is not None and chosen.forget_kept <= s.forget_target)
            chosen, go_on, reached = agree((chosen, not last_step and chosen is not None, reached))
            if chosen is None:  # no trial of this step made progress within the guard: keep the last step
                restore(model, base)
                break
            self._apply(model, base, reference, forget, names, chosen)
            steps.append(chosen)
            if not go_on:
                break
            forget = refresh_forget(model)
            self.spent += refresh_cost
        final = steps[-1] if steps else None
        return {
            "alpha": AUTO,
            "searched": True,
            "chosen_alpha": final.alpha if final else None,
            "chosen_lambda": final.lambda_ if final else None,
            "chosen_scope": final.scope if final else None,
            "steps": [asdict(t) for t in steps],
            "n_steps": len(steps),
            "target_reached": reached,
            "aimed": self.aim,
            "forget_kept": final.forget_kept if final else 1.0,
            "retain_changed": final.retain_changed if final else 0.0,
            "parameters_changed": sum(t.parameters_changed for t in steps),
            "n_trials": len(self.trials),
            "trials": [asdict(t) for t in self.trials],
            "settings": {**asdict(s), "scopes": list(s.scopes)},
            "probe": {"forget_samples": len(probe.forget_images), "retain_samples": len(probe.retain_images),
                      "unseen_samples": 0 if probe.unseen_images is None else len(probe.unseen_images),
                      "unseen_weight": probe.unseen_weight if probe.unseen_images is not None else 0.0},
            "search_time_s": time.perf_counter() - start,
            "work": {"importance": self.importance_work, "search": self.spent, "budget": self.budget,
                     "cost_ratio": None if not self.importance_work else 1 + self.spent / self.importance_work},
        }

    # ------------------------------------------------------------------ internals
    def _trial(self, model, base, reference, forget, probe, scope: float, alpha: float, step: int) -> Trial:
        restore(model, base)
        lambda_ = self.settings.lambda_ratio * alpha  # both > 0 by the settings' checks
        changed = apply_dampening(model, reference, forget, alpha, lambda_)
        trial = Trial(scope, alpha, lambda_, **probe.measure(model), parameters_changed=changed, step=step)
        self.spent += self._trial_cost
        self.trials.append(trial)
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(alpha=f"{alpha:.3g}", kept=f"{trial.forget_kept:.2f}", refresh=False)
        return trial

    def _search_scope(self, model, base, reference, forget, probe, scope: float, step: int) -> Trial | None:
        """Largest alpha in ``scope`` whose trial is forgotten and safe; None when no trial is.

        One bisection on log alpha over a single monotone question, "did this trial do
        enough?": a trial that forgot Df *or* broke the retain guard did enough (go to a
        larger alpha, less dampening); a safe trial that did not forget did too little (go
        smaller). Both effects grow as alpha falls, so the boundary is one crossing and a
        forgotten, safe trial, if any exists, lies next to it. Trials are cheap (dampen and
        two forward passes) but not free, so the search stops at ``precision`` or when the
        trial budget is spent.
        """
        s = self.settings
        lo, hi = s.alpha_min, s.alpha_max
        best: Trial | None = None
        tried: list[Trial] = []
        while hi / lo > s.precision and self._affordable():
            trial = self._trial(model, base, reference, forget, probe, scope, math.sqrt(lo * hi), step)
            tried.append(trial)
            if trial.forgotten(s) and trial.safe(s):
                best = trial if best is None or trial.alpha > best.alpha else best
            if trial.forgotten(s) or not trial.safe(s):
                lo = trial.alpha
            else:
                hi = trial.alpha
        if self.aim:
            closest = self._closest([t for t in tried if t.safe(s)])
            return closest if closest is not None and self._on_target(closest) else None
        return best

    def _closest(self, trials: Sequence[Trial]) -> Trial | None:
        """The trial whose forget_kept is closest to the target (the larger alpha on a tie), if any."""
        target = self.settings.forget_target
        return min(trials, key=lambda t: (abs(t.forget_kept - target), -t.alpha), default=None)

    def _on_target(self, trial: Trial) -> bool:
        """Whether ``trial`` met the target: within ``aim_tolerance`` of it when aiming, else at or below it."""
        s = self.settings
        return abs(trial.forget_kept - s.forget_target) <= s.aim_tolerance if self.aim else trial.forgotten(s)

    def _best_effort(self, step: int, start_kept: float) -> Trial | None:
        """No trial of ``step`` met both goals: the safe one that forgot most, if it forgot more
        than the step started with (``start_kept``); else None (the step changes nothing)."""
        safe = [t for t in self.trials if t.step == step and t.safe(self.settings)]
        if self.aim:  # the safe trial nearest the estimate among those that forgot anything
            return self._closest([t for t in safe if t.forget_kept < start_kept])
        best = min(safe, key=lambda t: (t.forget_kept, -t.alpha), default=None)
        return best if best is not None and best.forget_kept < start_kept else None

    def _apply(self, model, base, reference, forget, names, trial: Trial) -> None:
        restore(model, base)
        apply_dampening(model, scoped(reference, names, trial.scope), forget, trial.alpha, trial.lambda_)


def predicted_classes(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted classes, from the evaluation's own batched eval-mode pass (labels unused)."""
    if not len(images):
        return torch.empty(0, dtype=torch.long)
    batches = [(chunk, torch.zeros(len(chunk), dtype=torch.long)) for chunk in images.split(batch_size)]
    return predict(model, batches)[0].argmax(1)


def sample_items(dataset, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded sample of ``count`` images of a (training) dataset and their labels, stacked; all of it when smaller.

    Datasets held in memory hand out a batch of positions in one gather (``__getitems__``)."""
    n = len(dataset)
    if not n:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    generator = torch.Generator().manual_seed(int(seed))
    positions = torch.randperm(n, generator=generator)[: min(count, n)].sort().values.tolist()
    fetch = getattr(dataset, "__getitems__", None)
    items = [item for start in range(0, len(positions), 1024)
             for item in (fetch(positions[start:start + 1024]) if fetch else
                          [dataset[i] for i in positions[start:start + 1024]])]
    return (torch.stack([image for image, _ in items]),
            torch.as_tensor([int(label) for _, label in items], dtype=torch.long))


def sample_images(dataset, count: int, seed: int) -> torch.Tensor:
    """A seeded sample of ``count`` images of a (training) dataset, stacked; all of it when smaller."""
    return sample_items(dataset, count, seed)[0]
