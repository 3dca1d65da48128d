"""The retrained reference of a forget request: found in the registry, or trained once and published.

The gold standard of unlearning is a model trained from scratch without Df. For a run's
(dataset, label kind, model, image size, training seed) and forget set, that model is the
same for every method and every hyperparameter: it is trained once (``method=retrain``'s
computation: every weight re-initialised from the run's seed, the source model's recipe on
Dr) and published beside the source models under
``<checkpoint_dir>/references/<source name>-retrain-<forget>-<digest>``. The digest covers
the forget and retain indices and labels, the images, the training recipe and the model
settings, so a changed recipe or split never finds a stale reference.

Jobs that need the same missing reference at once (a 12-method sweep, SLURM tasks) train
it once: the first takes a lock beside the registry entry, the others wait for it to be
published (:func:`unlearning.locks.compute_once`). Under DDP the reference is trained by
rank 0 alone, on one device, during evaluation (the other ranks have finished their part).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

from unlearning.errors import UserError
from unlearning.evaluation.metrics import accuracy
from unlearning.evaluation.predictions import predict
from unlearning.fingerprint import dataset_digest, digest_json, split_digest
from unlearning.jobs.builders import build_model, make_trainer, model_identity, training_recipe
from unlearning.locks import compute_once
from unlearning.methods.base import MethodContext
from unlearning.methods.retrain import Retrain
from unlearning.models.checkpoints import (
    check_compatible,
    checkpoint_exists,
    load_checkpoint,
    load_into,
    save_checkpoint,
)
from unlearning.models.classifier import training_settings
from unlearning.validate import one_of, positive_number

log = logging.getLogger(__name__)

REFERENCE_KINDS = ("none", "retrain")
#: How long a job waits for another job's reference before training it itself (a CIFAR reference takes hours).
DEFAULT_WAIT_S = 6 * 3600.0


def reference_kind(cfg: DictConfig) -> str:
    """``evaluation.reference``: none (default) or retrain; anything else is refused."""
    value = str((cfg.get("evaluation") or {}).get("reference", "none")).lower()
    if value in ("null", "false"):
        value = "none"
    return one_of(value, "evaluation.reference", REFERENCE_KINDS,
                  hint="(retrain: compare with a model retrained without Df, trained once per forget request)")


def forget_fingerprint(data) -> dict[str, str]:
    """What identifies the forget request: Df and Dr (indices and labels) and the images they come from."""
    return {"forget": split_digest(data, "forget", with_labels=True),
            "retain": split_digest(data, "retain", with_labels=True),
            "images": dataset_digest(data) or f"{data.bundle.name}-{data.input_size}px"}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def reference_path(cfg: DictConfig, data, seed: int) -> Path:
    """Where the retrained reference of this run's forget request is published."""
    source = model_identity(cfg, data.label_kind, data.input_size, seed).name
    digest = digest_json({"request": forget_fingerprint(data), "recipe": training_recipe(cfg), "seed": seed})[:12]
    return (Path(cfg.paths.checkpoint_dir) / "references"
            / f"{source}-retrain-{cfg.task.name}-{slug(data.split.description)}-{digest}")


def expected_metadata(cfg: DictConfig, data, seed: int) -> dict[str, Any]:
    return {"reference": "retrain", "dataset": cfg.dataset.name, "label_kind": data.label_kind,
            "num_classes": data.num_classes, "model": cfg.model.name, "image_size": data.input_size, "seed": seed,
            "task": str(cfg.task.name), "forget_digest": forget_fingerprint(data)["forget"]}


def load_reference(cfg: DictConfig, data, seed: int, path: Path) -> nn.Module:
    """The reference at ``path``, after checking that it was retrained for this very request."""
    state, metadata = load_checkpoint(path)
    if metadata.get("reference") != "retrain":
        raise UserError(f"the model at evaluation.reference_checkpoint={path} is not a retrained reference (its "
                        "metadata has no reference: retrain); leave evaluation.reference_checkpoint unset so that "
                        "unlearn.py finds or trains the right one.")
    expected = expected_metadata(cfg, data, seed)
    if metadata.get("forget_digest") != expected["forget_digest"]:
        raise UserError(f"the reference at {path} was retrained without another forget set "
                        f"({metadata.get('forget')!r}, this run forgets {data.split.description!r}); "
                        "a reference is only valid for its own request. Leave evaluation.reference_checkpoint unset.")
    check_compatible(metadata, {k: v for k, v in expected.items() if k != "forget_digest"}, path)
    return load_into(build_model(cfg, data.num_classes, data.channels), state, path)


def leave_finished_process_group() -> None:
    """Under DDP, rank 0 trains the reference alone after the other ranks have finished: leave their group.

    The method's collectives are over by then (the other ranks returned after it), but a
    Lightning Trainer or a torchmetrics metric in a process whose default group is still
    initialised would try to synchronise with ranks that are gone.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def train_reference(cfg: DictConfig, data, seed: int, fresh, run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Retrain from scratch on Dr with the source recipe, on one device (see the module docstring)."""
    leave_finished_process_group()
    model = build_model(cfg, data.num_classes, data.channels)
    L.seed_everything(seed, workers=True, verbose=False)  # as unlearn.py seeds method=retrain: the same model
    context = MethodContext(
        # its training curves go to the run's loggers under "reference" (log_method_curves: true)
        make_trainer=partial(make_trainer, cfg, "reference" if cfg.get("log_method_curves") else False,
                             default_root_dir=str(run_dir / "reference_training"),
                             devices=1, num_nodes=1, strategy="auto"),
        fresh_model=fresh, original=model, task=str(cfg.task.name), seed=seed,
        training=training_settings(cfg.dataset.training, cfg.model.get("training")),
    )
    start = time.perf_counter()
    info = Retrain().unlearn(model, data, context)
    train_time = time.perf_counter() - start
    model = model.cpu().eval()
    logits, labels = predict(model, data.loader("test"))
    return model, {**info, "train_time_s": train_time, "test_acc": accuracy(logits, labels)}


def given_reference(cfg: DictConfig) -> Path | None:
    given = (cfg.get("evaluation") or {}).get("reference_checkpoint")
    return Path(str(given)).expanduser() if given else None


def check_given_reference(cfg: DictConfig, data, seed: int) -> None:
    """Refuse a wrong ``evaluation.reference_checkpoint`` before any work (loading it twice costs little)."""
    path = given_reference(cfg)
    if path is not None:
        if reference_kind(cfg) != "retrain":
            raise UserError(f"a reference is given (evaluation.reference_checkpoint={path}) but evaluation.reference is "
                            f"{reference_kind(cfg)!r}; add evaluation.reference=retrain to compare with it.")
        load_reference(cfg, data, seed, path)


def find_or_train_reference(cfg: DictConfig, data, seed: int, fresh, run_dir: Path) -> tuple[nn.Module, Path]:
    """The reference model of this run's request and where it lies; trained and published once when missing."""
    path = given_reference(cfg)
    if path is not None:
        return load_reference(cfg, data, seed, path), path
    path = reference_path(cfg, data, seed)
    wait_s = positive_number((cfg.get("evaluation") or {}).get("reference_wait_s", DEFAULT_WAIT_S),
                             "evaluation.reference_wait_s")
    with compute_once(path.with_name(path.name + ".lock"), lambda: checkpoint_exists(path), wait_s,
                      what=f"the retrained reference {path.name}") as must_train:
        if must_train:
            print(f"No retrained reference for {data.split.description} at {path}: training it first "
                  f"(method=retrain on Dr with the source model's recipe, once for every run of this request).")
            model, info = train_reference(cfg, data, seed, fresh, run_dir)
            metadata = {**expected_metadata(cfg, data, seed), "forget": data.split.description,
                        "retain_digest": forget_fingerprint(data)["retain"],
                        "class_names": data.class_names, "channels": data.channels,
                        "recipe": training_recipe(cfg), "created": datetime.now(UTC).isoformat(timespec="seconds"), **info}
            try:
                save_checkpoint(path, model, metadata, replace=path.exists() and not checkpoint_exists(path))
                log.info("published the retrained reference to %s (test accuracy %.2f%%)", path, info["test_acc"])
            except FileExistsError:  # another job (that gave up waiting on us) published it first: use theirs
                pass
            print(f"reference test accuracy: {info['test_acc']:.2f}%  ({info['train_time_s']:.1f} s)  "
                  f"checkpoint: {path}")
    return load_reference(cfg, data, seed, path), path
