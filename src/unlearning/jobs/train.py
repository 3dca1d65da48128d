"""Train a classifier with the dataset's recipe and publish it where unlearn.py finds it.

The model that is kept is chosen without the test split: the last epoch (``training.keep:
last``, the default) or the epoch with the best accuracy on the validation split (``best``).
The test accuracy is measured once, afterwards, to report (docs/recipe.md says why last).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unlearning.distributed import is_rank_zero
from unlearning.evaluation.metrics import accuracy
from unlearning.evaluation.predictions import predict
from unlearning.jobs.builders import (
    build_datamodule,
    build_logger,
    build_model,
    build_task,
    corruption_key_of,
    make_trainer,
    model_identity,
    start_job_of,
)
from unlearning.jobs.launched import prepare_job
from unlearning.models.checkpoints import METADATA_FILE, checkpoint_exists, save_checkpoint
from unlearning.models.classifier import (
    PreciseBatchNorm,
    ValidationCadence,
    ValidationCurve,
    classifier_for_schedule,
    training_settings,
    validation_cadence,
)
from unlearning.models.registry import model_metadata, registry_path
from unlearning.runs import claim_run_folder
from unlearning.validate import one_of, positive_number, whole_number

log = logging.getLogger(__name__)

#: Which epoch's weights training keeps: the last, or the best on the validation split.
KEEP = ("last", "best")


def checked_schedule(cfg: DictConfig) -> dict:
    """The dataset's training schedule with the model's on top, checked (epochs, lr, keep, validation cadence)."""
    settings = training_settings(cfg.dataset.training, cfg.model.get("training"))
    settings["epochs"] = whole_number(settings["epochs"], "dataset.training.epochs (model.training.epochs on top)")
    settings["lr"] = positive_number(settings["lr"], "dataset.training.lr (model.training.lr on top)")
    settings["keep"] = one_of(settings.get("keep", "last"), "dataset.training.keep", KEEP,
                              hint="(last: the final epoch; best: the best on the validation split)")
    settings["precise_bn"] = whole_number(settings.get("precise_bn", 2000), "dataset.training.precise_bn", minimum=0,
                                          hint="It is how many training images batch norm's statistics are "
                                               "recomputed on after the last epoch (0: keep the running ones).")
    settings["validate_every"] = validation_cadence(settings)
    return settings


def train(cfg: DictConfig, labels: str | None = None, output_dir: str | Path | None = None) -> Path:
    """Train from scratch on D, keep the last (or best-validation) epoch, save and publish it.

    Returns the published checkpoint folder (``paths.checkpoint_dir/<name>``); an existing
    one is only replaced with ``overwrite=true``. The run's own copy stays in its folder.
    """
    start_job_of(cfg)
    # task=poison|mislabel: the model is trained on that corrupted D (and published under its key)
    corrupt_with = build_task(cfg) if corruption_key_of(cfg) else None
    data = build_datamodule(cfg, task=None, labels=labels or cfg.get("labels") or None, corrupt_with=corrupt_with)
    data.setup()
    settings = checked_schedule(cfg)
    data.batch_size = whole_number(settings.get("batch_size", data.batch_size), "dataset.training.batch_size")
    identity = model_identity(cfg, data.label_kind, data.input_size)
    module = classifier_for_schedule(build_model(cfg, data.num_classes, data.channels), data.num_classes,
                                     settings, settings["epochs"])
    curve = ValidationCurve(keep_best=settings["keep"] == "best")
    callbacks = [curve]
    if settings["validate_every"] > 1:  # the last epoch validated; the random stream of every-epoch validation
        callbacks.append(ValidationCadence(data.val_dataloader(), settings["validate_every"]))
    if settings["precise_bn"]:  # before the last validation, so the curve's last point is the kept model's
        callbacks.insert(0, PreciseBatchNorm(data.sample_loader("full", settings["precise_bn"])))
    trainer = make_trainer(cfg, logger=build_logger(cfg), max_epochs=int(settings["epochs"]),
                           callbacks=callbacks, enable_checkpointing=False, num_sanity_val_steps=0,
                           check_val_every_n_epoch=settings["validate_every"],
                           default_root_dir=str(output_dir) if output_dir is not None else None)
    log.info("training %s on %s (%s labels, %d classes, %d px; D %d, validation %d images) for %d epochs",
             cfg.model.name, cfg.dataset.name, data.label_kind, data.num_classes, data.input_size,
             len(data.indices("full")), len(data.indices("val")), settings["epochs"])
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    train_time = time.perf_counter() - start
    target = registry_path(cfg.paths.checkpoint_dir, identity)
    if not is_rank_zero():
        return target
    model = module.model.cpu()
    kept = int(settings["epochs"]) - 1
    if curve.keep_best and curve.state is not None:
        model.load_state_dict(curve.state)
        kept = curve.epoch
    logits, labels_ = predict(model, data.loader("test"))
    test_acc = accuracy(logits, labels_)  # measured to report, after the choice
    config = {k: OmegaConf.to_container(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in cfg if k != "hydra"}
    metadata = model_metadata(
        identity, data, OmegaConf.to_container(cfg.model, resolve=True), test_acc=test_acc,
        val_acc=curve.curve[kept] if kept < len(curve.curve) else None, kept_epoch=kept + 1, keep=settings["keep"],
        best_val_epoch=curve.epoch + 1 if curve.epoch >= 0 else None, epochs=int(settings["epochs"]), val_acc_per_epoch=curve.curve,
        elapsed_s_per_epoch=curve.elapsed, validate_every=settings["validate_every"],
        n_train=int(len(data.indices("full"))), n_val=int(len(data.indices("val"))),
        train_time_s=train_time, config=config)
    log.info("test accuracy %.2f%% (kept epoch %d of %d, %s), %.1f s of training", test_acc, kept + 1,
             settings["epochs"], settings["keep"], train_time)
    if output_dir is not None:
        save_checkpoint(Path(output_dir) / "model", model, metadata)
    overwrite = bool(cfg.get("overwrite", False))
    try:
        if checkpoint_exists(target) and not overwrite:
            raise FileExistsError(target)
        # replace an incomplete folder, but never a model another run published meanwhile
        save_checkpoint(target, model, metadata, replace=overwrite or target.exists())
        log.info("published the trained model to %s", target)
    except FileExistsError:
        log.warning("kept the existing trained model at %s (set overwrite=true to replace it); "
                    "this run's model is in %s", target, Path(output_dir or ".") / "model")
    print(f"test accuracy: {test_acc:.2f}%  (validation {metadata['val_acc']}%, train time {train_time:.1f} s)  "
          f"checkpoint: {target}")
    return target


def train_job(cfg: DictConfig) -> float | None:
    """train.py's task function: train in this run's folder and publish the model."""
    from hydra.core.hydra_config import HydraConfig

    prepare_job(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not is_rank_zero():
        train(cfg, output_dir=run_dir)
        return None
    finished = (run_dir / "model" / METADATA_FILE).is_file()
    with claim_run_folder(run_dir, finished=finished, what="training run"):
        train(cfg, output_dir=run_dir)
    return None
