"""Train a classifier with the paper's recipe and publish it where unlearn.py finds it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from unlearning.distributed import is_rank_zero
from unlearning.evaluation.metrics import accuracy
from unlearning.evaluation.predictions import predict
from unlearning.jobs.builders import build_datamodule, build_logger, build_model, build_task, make_trainer
from unlearning.jobs.launched import prepare_job
from unlearning.models.checkpoints import METADATA_FILE, checkpoint_exists, save_checkpoint
from unlearning.models.classifier import classifier_for_schedule, training_settings
from unlearning.models.registry import corruption_key_of, model_metadata, registry_path
from unlearning.reproducibility import start_job
from unlearning.runs import claim_run_folder
from unlearning.validate import positive_number, whole_number

log = logging.getLogger(__name__)


class KeepBestWeights(L.Callback):
    """Keeps a CPU copy of the weights with the best validation accuracy seen so far.

    It also records the validation accuracy of every epoch (``curve``, in %): a recipe that is
    chaotic in its first epochs shows it there long before its final accuracy does (docs/recipe.md).
    """

    def __init__(self, monitor: str = "val/acc"):
        self.monitor, self.best, self.state, self.epoch = monitor, -1.0, None, -1
        self.curve: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        self.curve.append(round(100.0 * float(value), 2))
        if float(value) > self.best:
            self.best, self.epoch = float(value), trainer.current_epoch
            self.state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}


def train(cfg: DictConfig, labels: str | None = None, output_dir: str | Path | None = None) -> Path:
    """Train from scratch on D, keep the best test-accuracy epoch, save and publish it.

    Returns the published checkpoint folder (``paths.checkpoint_dir/<name>``); an existing
    one is only replaced with ``overwrite=true``. The run's own copy stays in its folder.
    """
    start_job(cfg)
    # task=poison|mislabel: the model is trained on that corrupted D (and published under its key)
    corrupt_with = build_task(cfg) if corruption_key_of(cfg) else None
    data = build_datamodule(cfg, task=None, labels=labels or cfg.get("labels") or None, corrupt_with=corrupt_with)
    data.setup()
    settings = training_settings(cfg.dataset.training, cfg.model.get("training"))
    data.batch_size = whole_number(settings.get("batch_size", data.batch_size), "dataset.training.batch_size")
    settings["epochs"] = whole_number(settings["epochs"], "dataset.training.epochs (model.training.epochs on top)")
    settings["lr"] = positive_number(settings["lr"], "dataset.training.lr (model.training.lr on top)")
    module = classifier_for_schedule(build_model(cfg, data.num_classes, data.channels), data.num_classes,
                                     settings, settings["epochs"])
    best = KeepBestWeights()
    trainer = make_trainer(cfg, logger=build_logger(cfg), max_epochs=int(settings["epochs"]),
                           callbacks=[best], enable_checkpointing=False,
                           default_root_dir=str(output_dir) if output_dir is not None else None)
    log.info("training %s on %s (%s labels, %d classes, %d px) for %d epochs",
             cfg.model.name, cfg.dataset.name, data.label_kind, data.num_classes, data.input_size, settings["epochs"])
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    train_time = time.perf_counter() - start
    if not is_rank_zero():
        return registry_path(cfg, data.label_kind, data.input_size)
    model = module.model.cpu()
    if best.state is not None:
        model.load_state_dict(best.state)
    logits, labels_ = predict(model, data.loader("test"))
    test_acc = accuracy(logits, labels_)
    metadata = model_metadata(cfg, data, test_acc=test_acc, best_epoch=best.epoch, epochs=int(settings["epochs"]),
                              val_acc_per_epoch=best.curve, train_time_s=train_time, config={k: OmegaConf.to_container(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
                                      for k in cfg if k != "hydra"})
    log.info("test accuracy %.2f%% (best epoch %d), %.1f s of training", test_acc, best.epoch, train_time)
    if output_dir is not None:
        save_checkpoint(Path(output_dir) / "model", model, metadata)
    target = registry_path(cfg, data.label_kind, data.input_size)
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
    print(f"test accuracy: {test_acc:.2f}%  (train time {train_time:.1f} s)  checkpoint: {target}")
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
