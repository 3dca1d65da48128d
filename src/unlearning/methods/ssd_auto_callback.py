"""The automatic SSD mode as a Lightning callback: SSD's importances, then :class:`AutoSearch`.

Only :meth:`SSDCallback.dampen_model` changes: instead of one fixed alpha, the search of
:mod:`unlearning.methods.ssd_auto` picks alpha (and the dampening scope) per request. The
probe it uses is built from the data module's *training* splits only (Df and a seeded
sample of Dr); test data is never read.

For full-class requests the search compares imp_Df with an imp_D computed over
**class-coherent batches** (each batch holds one class, like a full-class Df), not the paper's mixed batches: with mixed
batches the classes' gradients partly cancel inside each batch mean, which inflates
imp_Df / imp_D for entries every class uses and turns alpha into a knife edge (measured in
docs/auto_ssd.md). SSD groups D by label; LFSSD, which reads no labels, by the model's own
predicted class (one extra forward pass over D, counted in the work budget). It costs the
same one pass over D as the paper's imp_D and is cached under its own key.
``method.auto.reference=mixed`` searches with the paper's imp_D instead, as sub-class requests
always do (their Df is part of one label class, see ``_by_class``).

Random-sample forgetting (``task=random``) is not searched: the search's target, "Df's
predictions changed", is right for a class but wrong for a few random training samples,
which a model that never saw them would still classify like unseen data (measured: the
search made 2 of 4 random requests worse than alpha 10). No training-only signal says how
unseen data is classified, so the automatic mode keeps the paper's setting there and says so.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from unlearning.methods.ssd import dampen
from unlearning.methods.ssd_auto import AUTO, AutoSearch, AutoSettings, Probe, sample_images
from unlearning.methods.ssd_callback import SSDCallback

log = logging.getLogger(__name__)

#: Tasks whose search uses the class-coherent imp_D with ``reference=by-class`` (see ``_by_class``).
CLASS_REFERENCE_TASKS = ("fullclass",)
# What the automatic mode does for tasks it cannot aim at: the paper's ResNet18 setting.
PAPER_ALPHA, PAPER_LAMBDA = 10.0, 1.0
NOT_SEARCHED = {"random": "random-sample forgetting has no class whose predictions should change; "
                          "the paper's alpha 10, lambda 1 is used (docs/auto_ssd.md)"}


def shortfall(info: dict[str, Any], settings: AutoSettings) -> str:
    """Why a search that missed its target left the model as it did, in words for the log.

    The search never trades the retain guard for forgetting, so a miss means Df may still be
    recognised; a user must hear that at run time, not only from ``target_reached`` in results.json.
    """
    kept, changed = 100 * info["forget_kept"], 100 * info["retain_changed"]
    if info["n_steps"]:
        applied = (f"it applied the safe dampening that forgot most ({info['n_steps']} step(s), "
                   f"{info['parameters_changed']} entries changed, {changed:.1f}% of the retain sample changed "
                   "prediction)")
    else:
        applied = "no trial that stayed within that guard forgot any of Df, so nothing was dampened"
    return (f"the target was not reached in {info['n_trials']} trials: {kept:.0f}% of the Df probe keeps its "
            f"original prediction (target <= {100 * settings.forget_target:g}%) while at most "
            f"{100 * settings.retain_tolerance:g}% of the retain sample may change; {applied}. Df may not be "
            "forgotten: check the forget metrics (see 'Not done' in docs/auto_ssd.md).")


class AutoSSDCallback(SSDCallback):
    """:class:`SSDCallback` whose dampening searches alpha per request (``method.alpha=auto``)."""

    def __init__(self, settings: AutoSettings | None = None, variant: str = "ssd", batch_size: int = 64,
                 **kwargs: Any):
        # alpha/lambda are chosen per request; the parent's numeric check gets neutral values.
        super().__init__(1.0, 1.0, variant, batch_size, **kwargs)
        self.alpha = self.lambda_ = AUTO
        self.settings = settings or AutoSettings()
        self.search_info: dict[str, Any] = {}

    @staticmethod
    def _task(trainer: L.Trainer) -> str | None:
        return getattr(getattr(trainer.datamodule, "task", None), "name", None)

    def full_importance(self, trainer: L.Trainer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """imp_D over class-coherent batches for a search; the paper's imp_D where auto does not search."""
        if not self._by_class(trainer):
            return super().full_importance(trainer, model)
        return self._importance(trainer, model, "full", by_class=True)

    def _by_class(self, trainer: L.Trainer) -> bool:
        """Whether this request's imp_D is the class-coherent one (``reference=by-class``, full-class only).

        Only a full-class Df is one class of the model's labels, the composition the class-coherent
        batches reproduce. A sub-class Df is part of one label class (measured, SSD: 0/5 sub-class
        requests clean with it, 1/5 with the paper's imp_D, as alpha 10), and random forgetting keeps
        the paper's setting altogether, so both use the paper's imp_D.
        """
        return self.settings.reference == "by-class" and self._task(trainer) in CLASS_REFERENCE_TASKS

    def dampen_model(self, trainer: L.Trainer, model: torch.nn.Module) -> int:
        data = trainer.datamodule
        s = self.settings
        task = self._task(trainer)
        if task in NOT_SEARCHED:
            if getattr(trainer, "global_rank", 0) == 0:  # once, not once per DDP process
                log.warning("method.alpha=auto: %s.", NOT_SEARCHED[task])
            changed = dampen(model, self.full, self.forget, PAPER_ALPHA, PAPER_LAMBDA)
            self.search_info = {"alpha": AUTO, "searched": False, "reason": NOT_SEARCHED[task],
                                "chosen_alpha": PAPER_ALPHA, "chosen_lambda": PAPER_LAMBDA, "n_steps": 1,
                                "n_trials": 0, "parameters_changed": changed}
            return changed
        probe = Probe(
            forget_images=sample_images(data.dataset("forget"), s.forget_samples, s.seed),
            retain_images=sample_images(data.dataset("retain"), s.retain_samples, s.seed + 1),
            batch_size=self.batch_size,
        )

        def agree(choice: Any) -> Any:
            return choice if trainer.world_size == 1 else trainer.strategy.broadcast(choice, src=0)

        def refresh_forget(dampened: torch.nn.Module) -> dict[str, torch.Tensor]:
            return self.importances_on_all_ranks(trainer, dampened, "forget")

        n_full, n_forget = len(data.indices("full")), len(data.indices("forget"))
        search = AutoSearch(s, importance_work=3.0 * (n_full + n_forget))
        # LFSSD's grouping predicted every sample of D once: counted (cache hit or not, so the
        # search does the same trials either way) against the same budget as the trials.
        by_class = self._by_class(trainer)
        grouping_work = float(n_full) if by_class and self.grouped_by == "predicted class" else 0.0
        search.spent += grouping_work
        self.search_info = search.run(model, self.full, self.forget, probe, agree, refresh_forget,
                                      refresh_cost=3.0 * n_forget)
        self.search_info["reference"] = {
            "imp_D": "class-coherent batches" if by_class else "mixed batches (the paper's)",
            "grouped_by": self.grouped_by if by_class else None,
            "grouping_work": grouping_work,
        }
        if not self.search_info["target_reached"] and getattr(trainer, "global_rank", 0) == 0:
            log.warning("method.alpha=auto: %s", shortfall(self.search_info, s))
        return int(self.search_info["parameters_changed"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        info = dict(self.search_info)
        self.summary.update({**info, "alpha": AUTO, "lambda": info.get("chosen_lambda")})
