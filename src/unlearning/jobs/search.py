"""What a hyperparameter search (Hydra's Optuna sweeper) needs: the value a run returns, and a sampler
that carries on a persisted study.

The value: as in lightning-hydra-template, the searched objective is a config value, not code: the task
function returns the number that ``optimized_metric`` names in the run's results.json, so a
search over SSD's alpha can minimise the default ``objective`` or, once a retrained reference
is computed (``evaluation.reference=retrain``), maximise Tug-of-War (``metrics.relative.tow``
with ``hydra.sweeper.direction=maximize``). The value is read back from the record the run
wrote, so a run skipped by ``resume=true`` returns the same number as when it ran.

The sampler: a study kept in ``hydra.sweeper.storage`` is resumed by running the same command
again, but a seeded TPE sampler would then draw its random start-up trials again from the same
seed, repeating the first invocation's parameters one for one (seen: trials 3-5 = trials 0-2).
:func:`resumable_tpe` offsets the seed by the trials the study already holds, so a resumed study
explores new points and stays reproducible.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from unlearning.errors import UserError

log = logging.getLogger(__name__)

#: Top-level numbers of a RunRecord that can be searched on.
TOP_LEVEL = ("objective", "method_time_s")
#: Stages of ``metrics`` (record.py); the last two exist only with a retrained reference.
STAGES = ("original", "unlearned", "retrained", "relative")
REFERENCE_STAGES = ("retrained", "relative")
FORMS = ("objective, method_time_s, or metrics.<stage>.<name> with stage original, unlearned, "
         "retrained or relative (e.g. metrics.unlearned.forget_test_acc, metrics.relative.tow)")


def check_optimized_metric(cfg: DictConfig) -> str | None:
    """``cfg.optimized_metric`` when it names a number a run records; a :class:`UserError` before any work otherwise."""
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if not isinstance(name, str):
        raise UserError(f"optimized_metric must be a name, got {name!r}: {FORMS}.")
    parts = name.split(".")
    if name in TOP_LEVEL:
        return name
    if len(parts) != 3 or parts[0] != "metrics" or parts[1] not in STAGES or not parts[2]:
        raise UserError(f"optimized_metric={name} is not a number a run records: use {FORMS}.")
    evaluation = cfg.get("evaluation") or {}
    has_reference = evaluation.get("reference", "none") != "none" or evaluation.get("reference_checkpoint")
    if parts[1] in REFERENCE_STAGES and not has_reference:
        raise UserError(f"optimized_metric={name} needs the retrained reference: add evaluation.reference=retrain "
                        "(or evaluation.reference_checkpoint=PATH).")
    return name


def metric_of(record: dict[str, Any], name: str) -> float:
    """The number ``name`` (a dotted path) in a results.json; a :class:`UserError` listing the keys that exist."""
    node: Any = record
    walked: list[str] = []
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(walked) or "results.json"
            keys = ", ".join(sorted(node)) if isinstance(node, dict) else "nothing (not a mapping)"
            raise UserError(f"optimized_metric={name}: {where} has no {part!r}; it has {keys}.")
        node = node[part]
        walked.append(part)
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise UserError(f"optimized_metric={name} is {node!r} in results.json, not a number.")
    return float(node)


def optimized_value(record: dict[str, Any], name: str | None) -> float:
    """What a sweeper minimises from a run's record (as results.json holds it): ``optimized_metric``
    (checked by :func:`check_optimized_metric`), else the objective. NaN is passed on: Optuna marks
    that trial failed."""
    return float(record["objective"]) if name is None else metric_of(record, name)


def trials_in_study(storage: str | None, study_name: str | None) -> int:
    """How many trials ``study_name`` already holds in ``storage`` (0: no storage, or no such study yet)."""
    if not storage or not study_name:
        return 0
    import optuna

    summaries = optuna.study.get_all_study_summaries(storage=storage)
    return next((summary.n_trials for summary in summaries if summary.study_name == study_name), 0)


def resumable_tpe(seed: int | None = None, storage: str | None = None, study_name: str | None = None,
                  **tpe_options: Any):
    """Optuna's TPE sampler, seeded ``seed`` + the trials the persisted study already holds.

    ``hydra.sweeper.sampler`` (conf/hydra/sweeper/sampler/resumable_tpe.yaml) instantiates it when the
    sweep starts, before the first new trial, so the count is that of the earlier invocations. The
    other keyword arguments go to ``optuna.samplers.TPESampler`` unchanged.
    """
    import optuna

    done = trials_in_study(storage, study_name)
    if done and seed is not None:
        log.info("study %s holds %d trials: TPE seed %d + %d for the new ones", study_name, done, seed, done)
        seed += done
    return optuna.samplers.TPESampler(seed=seed, **tpe_options)
