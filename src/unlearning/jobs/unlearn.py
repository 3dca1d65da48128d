"""Make a trained model forget: find or train it, run the method, evaluate, record.

:func:`unlearn` is the run, five named stages that each take the run's inputs and return a
small typed result (read it top to bottom):

1. :func:`prepare_inputs` -> :class:`RunInputs`: seed, check every setting once, build the
   method and the data, find (or train) the source model, load and check it; before any of
   the method's work is done.
2. :func:`run_method` -> :class:`MethodOutcome`: the method alone, timed (every rank of a DDP
   run takes part).
3. :func:`evaluate_run` -> :class:`Evaluation`: the original, unlearned and (when asked for)
   retrained models' metrics, timed apart (rank 0 only, as every later stage).
4. :func:`make_record` -> :class:`~unlearning.record.RunRecord`: the typed record of the run.
5. :func:`publish`: save the unlearned model, write ``results.json``, tell the logger.

:func:`unlearn_job` is unlearn.py's task function around it: Hydra's run folder, ``resume``,
and the number a sweeper minimises, taken from the record it returns.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.distributed import is_rank_zero, wait_for_rank_zero
from unlearning.errors import UserError
from unlearning.evaluation.corruption import corruption_metrics, corruption_names, triggered_test_logits
from unlearning.evaluation.evaluate import (
    METRIC_NAMES,
    EvaluationSettings,
    compare_with_reference,
    evaluate_recurring,
    metrics_of,
    model_outputs,
    teacher_logits,
)
from unlearning.jobs.builders import (
    build_cache,
    build_datamodule,
    build_logger,
    build_method,
    build_model,
    build_task,
    make_trainer,
    published_model_path,
    start_job_of,
)
from unlearning.jobs.launched import prepare_job
from unlearning.jobs.reference import check_given_reference, find_or_train_reference, reference_kind
from unlearning.jobs.report_table import print_before_after
from unlearning.jobs.search import check_optimized_metric, optimized_value
from unlearning.jobs.train import train
from unlearning.methods.base import MethodContext, UnlearningMethod
from unlearning.models.checkpoints import (
    check_compatible,
    checkpoint_exists,
    load_checkpoint,
    load_into,
    save_checkpoint,
)
from unlearning.models.classifier import training_settings
from unlearning.record import COMPLETE, RESULTS_FILE, RunRecord, record_complete
from unlearning.runs import claim_run_folder
from unlearning.validate import boolean

log = logging.getLogger(__name__)


def find_source_checkpoint(cfg: DictConfig, data, run_dir: Path) -> Path:
    """``checkpoint=PATH`` if given; else the published model, trained first when missing."""
    if cfg.get("checkpoint"):
        return Path(str(cfg.checkpoint)).expanduser()
    target = published_model_path(cfg, data.label_kind, data.input_size)
    if checkpoint_exists(target):
        return target
    if not cfg.get("train_if_missing", True):
        raise UserError(f"no trained model at {target}; run `python train.py dataset={cfg.dataset.name} "
                        f"model={cfg.model.name}` first, give checkpoint=PATH, or set train_if_missing=true.")
    log.warning("no trained model at %s: training it first (%s labels)", target, data.label_kind)
    print(f"No trained model for {cfg.dataset.name}/{data.label_kind}/{cfg.model.name} at {target}: training it first.")
    trained = train(cfg, labels=data.label_kind, output_dir=run_dir / "source_training")
    wait_for_rank_zero()  # under DDP only rank 0 saves the model; the others must not read it before
    return trained


def evaluation_device(cfg: DictConfig) -> torch.device:
    wants_gpu = str(cfg.trainer.accelerator) in ("auto", "gpu", "cuda")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def fresh_model_factory(cfg: DictConfig, data, seed: int):
    """Builds randomly initialised models of the run's architecture, reproducibly from ``seed``."""

    def fresh(offset: int = 0) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + offset)
            return build_model(cfg, data.num_classes, data.channels)

    return fresh


def objective(before: dict[str, float], after: dict[str, float]) -> float:
    """The value a hyperparameter search minimises (in accuracy points; lower is better), from the
    **validation split** only: a search tunes, and nothing that tunes reads the test split.

    ``forgetting gap + 2 x max(0, retained validation accuracy lost)``, where the forgetting gap
    is how far the unlearned model is from what a model never trained on Df would do:

    - full-class and sub-class: the accuracy on the forgotten class's validation images (the
      ideal is to classify none of them as it);
    - random forgetting (no forgotten class): ``|Df-train accuracy - validation accuracy|``,
      because a model that never saw Df classifies it like unseen data, not at 0 %; pushing Df
      to 0 % is over-forgetting and itself reveals which samples were forgotten.

    Retained accuracy counts twice so that a search cannot buy forgetting with collateral
    damage. Sweepers (Optuna) read it as the return value of unlearn.py's task function.
    """
    lost = max(0.0, before["retain_val_acc"] - after["retain_val_acc"])
    if math.isnan(after["forget_val_acc"]):
        gap = abs(after["forget_train_acc"] - after["val_acc"])
    else:
        gap = after["forget_val_acc"]
    return float(gap + 2.0 * lost)


def experiment_name() -> str | None:
    """The ``experiment=NAME`` this run belongs to, when Hydra launched it with one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("experiment")
    return None if choice in (None, "null") else str(choice)


def check_source_outside(source: Path, run_dir: Path) -> None:
    """The run replaces ``run_dir/unlearned``: a source checkpoint in there would be overwritten."""
    target = (run_dir / "unlearned").resolve()
    if Path(source).resolve() == target or target in Path(source).resolve().parents:
        raise UserError(f"checkpoint={source} lies in this run's own output {target}, which the run replaces; "
                        "copy it elsewhere first or give this run another hydra.run.dir.")


def evaluation_settings(cfg: DictConfig, seed: int) -> EvaluationSettings:
    """``evaluation.strong_mia`` and ``evaluation.probe`` (booleans), checked before any work is done."""
    options = cfg.get("evaluation") or {}
    values = {key: boolean(options.get(key, True), f"evaluation.{key}") for key in ("strong_mia", "probe")}
    return EvaluationSettings(seed=seed, show_progress=bool(cfg.trainer.get("enable_progress_bar", True)), **values)


# ------------------------------------------------------------------ the run
def unlearn(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The whole unlearning run; returns its record as results.json holds it (None on non-zero ranks).

    Writes only into ``run_dir``, which it holds for itself (see :mod:`unlearning.runs`):
    a folder used by another live run, or holding a finished one, is refused.
    """
    run_dir = Path(run_dir)
    rank_zero = is_rank_zero()  # the other ranks of a multi-process run share rank 0's folder
    with (claim_run_folder(run_dir, finished=record_complete(run_dir / RESULTS_FILE), what="unlearning run")
          if rank_zero else nullcontext()):
        inputs = prepare_inputs(cfg, run_dir)
        outcome = run_method(inputs)
        if not rank_zero:
            return None
        evaluation = evaluate_run(inputs)
        show_evaluation(inputs, outcome, evaluation)
        record = make_record(inputs, outcome, evaluation)
        publish(inputs, record)
    return record.to_json()


def unlearn_job(cfg: DictConfig) -> float | None:
    """unlearn.py's task function: the run in Hydra's output folder (or its finished record with
    ``resume=true``); returns ``optimized_metric`` of the record (default: its objective) for sweepers."""
    from hydra.core.hydra_config import HydraConfig

    metric = check_optimized_metric(cfg)  # a wrong name fails before any work
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    prepare_job(cfg)
    if cfg.get("resume") and record_complete(run_dir / RESULTS_FILE):
        print(f"resume: {run_dir / RESULTS_FILE} is complete, skipping this run")
        record = RunRecord.load(run_dir / RESULTS_FILE).to_json()
    else:
        record = unlearn(cfg, run_dir)
    return None if record is None else optimized_value(record, metric)


# ------------------------------------------------------------------ stage 1: inputs
@dataclass(frozen=True)
class RunInputs:
    """Everything a run's method and evaluation work on, built and checked before the method runs.

    The method's context (:class:`~unlearning.methods.base.MethodContext`) holds the frozen
    original, the fresh-model factory and the cache; the evaluation settings and the kind of
    reference are checked once here and kept.
    """

    cfg: DictConfig
    run_dir: Path
    seed: int
    method: UnlearningMethod
    data: UnlearningDataModule
    #: The source checkpoint and its metadata; ``model`` is loaded from it and is what the method changes.
    source: Path
    metadata: dict[str, Any]
    model: nn.Module
    context: MethodContext
    evaluation: EvaluationSettings
    #: ``evaluation.reference``: "none" or "retrain".
    reference_kind: str
    #: The cache's counters before the run, so that the record holds this run's own.
    cache_before: dict[str, Any]


def load_source(cfg: DictConfig, data, seed: int, run_dir: Path) -> tuple[Path, dict[str, Any], nn.Module]:
    """The source checkpoint (found or trained), its metadata, and the model loaded from it, checked against the run."""
    source = find_source_checkpoint(cfg, data, run_dir)
    check_source_outside(source, run_dir)
    state, metadata = load_checkpoint(source)
    expected = {"dataset": cfg.dataset.name, "label_kind": data.label_kind, "num_classes": data.num_classes,
                "model": cfg.model.name}
    if not cfg.get("checkpoint"):  # the registry keys models by training seed; its metadata must agree
        expected["seed"] = seed
    # A model trained on poisoned or mislabelled data is another model: the corruption must be this task's.
    expected["corruption_key"] = data.corruption.key if data.corruption is not None else None
    check_compatible(metadata, expected, source)
    return source, metadata, load_into(build_model(cfg, data.num_classes, data.channels), state, source)


def prepare_inputs(cfg: DictConfig, run_dir: Path) -> RunInputs:
    """Stage 1: every setting checked and every input built; wrong settings fail here, before any long work."""
    seed = start_job_of(cfg)
    kind = reference_kind(cfg)
    settings = evaluation_settings(cfg, seed)
    method = build_method(cfg)
    task = build_task(cfg)
    method.check_task(cfg.task.name)
    data = build_datamodule(cfg, task)
    data.setup()
    source, metadata, model = load_source(cfg, data, seed, run_dir)
    check_given_reference(cfg, data, seed)  # a wrong reference by path is refused before the method runs
    cache = build_cache(cfg)
    context = MethodContext(
        make_trainer=partial(make_trainer, cfg, False, default_root_dir=str(run_dir)),
        fresh_model=fresh_model_factory(cfg, data, seed),
        original=copy.deepcopy(model).eval().requires_grad_(False),
        task=str(cfg.task.name),
        seed=seed,
        training=training_settings(cfg.dataset.training, cfg.model.get("training")),
        cache=cache,
    )
    return RunInputs(cfg=cfg, run_dir=run_dir, seed=seed, method=method, data=data, source=source,
                     metadata=metadata, model=model, context=context, evaluation=settings, reference_kind=kind,
                     cache_before=cache.stats.as_dict() if cache is not None else {})


# ------------------------------------------------------------------ stage 2: the method
@dataclass(frozen=True)
class MethodOutcome:
    """What the method reported (``method_info`` in results.json) and its wall time."""

    info: dict[str, Any]
    seconds: float


def run_method(inputs: RunInputs) -> MethodOutcome:
    """Stage 2: the method on the model, in place."""
    data = inputs.data
    L.seed_everything(inputs.seed, workers=True, verbose=False)
    print(f"Unlearning {data.split.description} of {inputs.cfg.dataset.name} with method={inputs.cfg.method.name} "
          f"({len(data.indices('forget'))} forget / {len(data.indices('retain'))} retain samples)")
    start = time.perf_counter()
    info = inputs.method.unlearn(inputs.model, data, inputs.context)
    return MethodOutcome(info, time.perf_counter() - start)


# ------------------------------------------------------------------ stage 3: evaluation
@dataclass(frozen=True)
class Evaluation:
    """Metrics per stage (original, unlearned, retrained, relative), their time, and the reference used."""

    metrics: dict[str, Any]
    seconds: float
    #: ``{"kind": "retrain", "checkpoint": ...}`` when the run compared with a retrained model.
    reference: dict[str, Any] | None


def evaluate_run(inputs: RunInputs) -> Evaluation:
    """Stage 3: metrics of the original and unlearned models (and of the retrained reference, when asked for).

    Training a missing reference does not count as evaluation time.
    """
    cfg, data, settings, context = inputs.cfg, inputs.data, inputs.evaluation, inputs.context
    cache, fresh = context.cache, context.fresh_model
    device = evaluation_device(cfg)
    reference, reference_record = None, None
    if inputs.reference_kind == "retrain":
        reference, path = find_or_train_reference(cfg, data, inputs.seed, fresh, inputs.run_dir)
        reference_record = {"kind": "retrain", "checkpoint": str(path.resolve())}
    start = time.perf_counter()
    # The teacher, the original and the reference recur in every run of a sweep: their outputs are cached.
    random_logits = teacher_logits(fresh(10_000).to(device), data, cache, show_progress=settings.show_progress)
    original = context.original.to(device)
    original_outputs, original_metrics = evaluate_recurring(original, data, random_logits, settings, cache)
    unlearned_outputs = model_outputs(inputs.model.to(device), data, features=settings.probe,
                                      show_progress=settings.show_progress)
    metrics = {"original": original_metrics,
               "unlearned": metrics_of(unlearned_outputs, data, random_logits, settings)}
    # poison / mislabel: healing and memorised errors, for every model (the triggered pass is cached
    # for the models that recur in every run of a sweep)
    evaluated = [("original", original, original_outputs, cache), ("unlearned", inputs.model, unlearned_outputs, None)]
    if reference is not None:
        reference_outputs, metrics["retrained"] = evaluate_recurring(reference.to(device), data, random_logits,
                                                                     settings, cache)
        evaluated.append(("retrained", reference, reference_outputs, cache))
    if data.corruption is not None:
        for stage, model, outputs, stage_cache in evaluated:
            metrics[stage].update(corruption_figures(model, outputs, data, stage_cache, settings.show_progress))
    if reference is not None:
        metrics["relative"] = compare_with_reference(
            (unlearned_outputs, metrics["unlearned"]), (original_outputs, metrics["original"]),
            (reference_outputs, metrics["retrained"]), data)
    return Evaluation(metrics, time.perf_counter() - start, reference_record)


def corruption_figures(model: nn.Module, outputs, data, cache, show_progress: bool) -> dict[str, float]:
    """Poison / mislabel figures of one model: from its training logits and a pass over triggered test images."""
    triggered = triggered_test_logits(model, data, cache, show_progress)
    return corruption_metrics(outputs.train_logits, triggered, data)


def show_evaluation(inputs: RunInputs, outcome: MethodOutcome, evaluation: Evaluation) -> None:
    """The before/after table (and the reference's column) on the terminal."""
    metrics = evaluation.metrics
    print_before_after(metrics["original"], metrics["unlearned"], (*METRIC_NAMES, *corruption_names(inputs.data)),
                       outcome.seconds, evaluation.seconds, metrics.get("retrained"), metrics.get("relative"))


# ------------------------------------------------------------------ stage 4: the record
def make_record(inputs: RunInputs, outcome: MethodOutcome, evaluation: Evaluation) -> RunRecord:
    """Stage 4: the run's :class:`RunRecord`, from its inputs, the method's report and the evaluation."""
    cfg, data, cache, metrics = inputs.cfg, inputs.data, inputs.context.cache, evaluation.metrics
    return RunRecord(
        status=COMPLETE,
        job="unlearn",
        method=str(cfg.method.name),
        dataset=str(cfg.dataset.name),
        model=str(cfg.model.name),
        task=str(cfg.task.name),
        forget=data.split.description,
        forget_target=str(cfg.task.get("forget", "")) if cfg.task.name != "random" else None,
        experiment=experiment_name(),
        label_kind=data.label_kind,
        seed=inputs.seed,
        class_names=data.class_names,
        n_forget=int(len(data.indices("forget"))),
        n_retain=int(len(data.indices("retain"))),
        metrics=metrics,
        reference=evaluation.reference,
        objective=objective(metrics["original"], metrics["unlearned"]),
        method_time_s=outcome.seconds,
        evaluation_time_s=evaluation.seconds,
        method_info=outcome.info,
        cache=None if cache is None else {
            "directory": str(cache.directory),
            **{k: v - inputs.cache_before.get(k, 0) for k, v in cache.stats.as_dict().items()},
        },
        source_checkpoint=str(Path(inputs.source).resolve()),
        source_test_acc=inputs.metadata.get("test_acc"),
        source_seed=inputs.metadata.get("seed"),
        unlearned_checkpoint=str((inputs.run_dir / "unlearned").resolve()),
        config=config_record(cfg),
    )


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The composed config, resolved, without Hydra's own section (kept in .hydra/ of the run)."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg if key != "hydra"}


# ------------------------------------------------------------------ stage 5: publish
def publish(inputs: RunInputs, record: RunRecord) -> None:
    """Stage 5: save the unlearned model, write ``results.json`` (last, atomically: it marks the run
    finished) and tell the logger."""
    save_checkpoint(inputs.run_dir / "unlearned", inputs.model.cpu(), {
        **inputs.metadata, "unlearned_with": inputs.cfg.method.name, "unlearned_from": str(inputs.source),
        "forget": inputs.data.split.description,
    })
    record.write(inputs.run_dir / RESULTS_FILE)
    send_to_logger(inputs.cfg, record)
    print(f"results: {inputs.run_dir / RESULTS_FILE}")


def send_to_logger(cfg: DictConfig, record: RunRecord) -> None:
    """The record's numbers to the configured logger (CSV, TensorBoard, W&B), when there is one."""
    logger = build_logger(cfg)
    if not logger:
        return
    metrics = {f"{stage}/{name}": value for stage, values in record.metrics.items()
               for name, value in values.items() if isinstance(value, int | float)}
    metrics.update(method_time_s=record.method_time_s, evaluation_time_s=record.evaluation_time_s,
                   objective=record.objective)
    logger.log_hyperparams({"method": record.method, "dataset": record.dataset, "model": record.model,
                            "task": record.task, "forget": record.forget, "seed": record.seed,
                            **{f"method_info/{k}": v for k, v in record.method_info.items()
                               if isinstance(v, int | float | str)}})
    logger.log_metrics(metrics)
    logger.finalize("success")
