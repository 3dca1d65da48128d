"""Turning config groups into objects: data module, model, trainer, logger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearning.cache import TensorCache, shared_cache
from unlearning.data.corruption import task_corruption_key
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.selection import SplitSettings, subset_if_asked
from unlearning.data.splits import ForgettingTask
from unlearning.errors import UserError
from unlearning.loggers import Loggers, build_loggers
from unlearning.methods.base import UnlearningMethod
from unlearning.models.classifier import identity_settings, training_settings
from unlearning.models.registry import ModelIdentity, recipe_key, registry_path
from unlearning.reproducibility import seed_of, start_job
from unlearning.validate import positive_number

#: Builder settings that say where the data lives, not what it is: left out of a model's identity.
LOCATION_KEYS = ("root", "download", "system_dir")


def training_recipe(cfg: DictConfig) -> dict[str, Any]:
    """How a model of this config is trained from scratch: schedule, augmentation, model settings.

    The source model's recipe, which a retrained reference repeats on Dr; part of both identities
    (less the settings that cannot change the weights, such as how often validation runs).
    """
    return {"training": identity_settings(training_settings(cfg.dataset.training, cfg.model.get("training"))),
            "augment": OmegaConf.to_container(cfg.dataset.augment, resolve=True),
            "model": OmegaConf.to_container(cfg.model, resolve=True)}


def data_selection(cfg: DictConfig) -> dict[str, Any]:
    """Which images are D and the validation split: the builder's settings (not its paths), split, subset."""
    builder = {k: v for k, v in OmegaConf.to_container(cfg.dataset.builder, resolve=True).items()
               if k not in LOCATION_KEYS}
    dataset = cfg.dataset
    return {"builder": builder,
            "split": SplitSettings.from_config(OmegaConf.to_container(dataset.split, resolve=True)
                                               if dataset.get("split") is not None else None).describe(),
            "subset": OmegaConf.to_container(dataset.subset, resolve=True) if dataset.get("subset") else None}


def corruption_key_of(cfg: DictConfig) -> str | None:
    """The key of the corrupted D (``task=poison|mislabel``) the model is trained on; None for clean D."""
    task = cfg.get("task")
    if task is None:
        return None
    return task_corruption_key(OmegaConf.to_container(task, resolve=True))


def model_identity(cfg: DictConfig, label_kind: str, input_size: int, seed: int | None = None) -> ModelIdentity:
    """The registry identity of the source model this config trains (or starts from) with ``seed`` (default: cfg's)."""
    return ModelIdentity(dataset=str(cfg.dataset.name), label_kind=label_kind, model=str(cfg.model.name),
                         image_size=int(input_size), seed=seed_of(cfg.get("seed", 0)) if seed is None else int(seed),
                         recipe_key=recipe_key(data_selection(cfg), training_recipe(cfg)),
                         corruption_key=corruption_key_of(cfg))


def published_model_path(cfg: DictConfig, label_kind: str, input_size: int) -> Path:
    """Where the source model of this config (``cfg.seed``) is published under ``paths.checkpoint_dir``."""
    return registry_path(cfg.paths.checkpoint_dir, model_identity(cfg, label_kind, input_size))


def instantiate_plain(config: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets our own :class:`UserError` through unwrapped.

    Hydra wraps every constructor error in an ``InstantiationException``; a user mistake
    detected inside a constructor (unknown class name, bad alpha) must reach the entry
    point as the plain message it is.
    """
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise


#: Keys of an SSD-family method's YAML that only its policy reads (``${..alpha}`` in conf/method/policy/):
#: handles for the command line (``method.alpha=5``), not arguments of the method.
POLICY_HANDLES = ("alpha", "lambda_", "reference_split")


def build_method(cfg: DictConfig) -> UnlearningMethod:
    """The method named by ``cfg.method._target_``, with every other key as an argument, named as its YAML says."""
    options = OmegaConf.to_container(cfg.method, resolve=True)
    name = options.pop("name", None)
    if "policy" in options:
        options = with_chosen_policy(options, name)
    try:
        method = instantiate_plain(options, _convert_="all")
    except InstantiationException as error:  # e.g. an argument the method does not take, or a bad value
        cause = error
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__  # a policy's own error is wrapped once more by its method's
        raise UserError(f"method={name}: {cause}") from None
    if name:
        method.name = str(name)
    return method


def with_chosen_policy(options: dict[str, Any], name: str | None) -> dict[str, Any]:
    """An SSD-family method's options with its policy chosen: ``method.alpha=auto`` puts ``method.auto``
    (the per-request search) in place of ``method.policy``; the handles are then dropped.

    A policy that chooses alpha itself (its YAML reads no ``alpha``) refuses a given one, so that
    ``method=assd method.alpha=10`` is not silently ASSD.
    """
    from unlearning.methods.ssd.search import is_auto

    search = options.pop("auto", None)
    alpha, policy = options.get("alpha"), options["policy"]
    if not isinstance(policy, dict) or "_target_" not in policy:
        raise UserError(f"method.policy={policy!r} is not a policy: choose one with method/policy=NAME (the files in "
                        "conf/method/policy/: fixed, percentile, ptn), or method.alpha=auto for the search.")
    reads_alpha = "alpha" in policy
    chooser = str(policy["_target_"]).rsplit(".", 1)[-1]
    if is_auto(alpha):
        if not reads_alpha or search is None:
            raise UserError(f"method.alpha=auto asks for the automatic search, but method={name}'s policy "
                            f"({chooser}) chooses alpha itself; give one of them.")
        options["policy"] = search
    elif alpha is not None and not reads_alpha:
        raise UserError(f"method={name}'s policy ({chooser}) chooses alpha itself; remove method.alpha={alpha!r} "
                        "or choose the paper's rule with method/policy=fixed.")
    elif alpha is None and reads_alpha:
        raise UserError("method.alpha is missing: give a number (paper: 10 for ResNet18, 5/25 for ViT) or auto.")
    for key in POLICY_HANDLES:
        options.pop(key, None)
    return options


def start_job_of(cfg: DictConfig) -> int:
    """:func:`~unlearning.reproducibility.start_job` with the config's ``seed`` and ``trainer.deterministic``."""
    return start_job(cfg.get("seed", 0), (cfg.get("trainer") or {}).get("deterministic", False))


def image_size(cfg: DictConfig) -> int | None:
    """The model's input size wins (224 for ViT); else the dataset's; None = native."""
    return cfg.model.get("image_size") or cfg.dataset.get("image_size") or None


def build_task(cfg: DictConfig) -> ForgettingTask:
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    task_cfg.pop("name", None)
    if task_cfg.get("forget", "") is None:
        raise UserError(f"task={cfg.task.name} has no default target on dataset={cfg.dataset.name}; "
                        "set task.forget=NAME (a class name or index).")
    return instantiate_plain(task_cfg)


def build_datamodule(cfg: DictConfig, task: ForgettingTask | None, labels: str | None = None,
                     corrupt_with: ForgettingTask | None = None) -> UnlearningDataModule:
    """The data module of ``cfg.dataset`` for ``task`` (None: training only, on D corrupted by ``corrupt_with``)."""
    dataset = cfg.dataset
    builder_cfg = dataset.builder
    # debug=fast: a stratified fraction of the images (unlearning.data.selection); null: all of them
    subset = OmegaConf.to_container(dataset.subset, resolve=True) if dataset.get("subset") else None
    split = OmegaConf.to_container(dataset.split, resolve=True) if dataset.get("split") is not None else None
    return UnlearningDataModule(
        builder=lambda: subset_if_asked(instantiate_plain(builder_cfg), subset),
        task=task,
        corrupt_with=corrupt_with,
        labels=labels or dataset.labels,
        aliases=OmegaConf.to_container(dataset.aliases, resolve=True),
        image_size=image_size(cfg),
        augment=OmegaConf.to_container(dataset.augment, resolve=True),
        batch_size=dataset.batch_size,
        eval_batch_size=dataset.eval_batch_size,
        num_workers=dataset.num_workers,
        pin_memory=uses_gpu(cfg),  # page-locked batches: asynchronous host-to-GPU copies
        split=split,
        in_memory=int(positive_number(dataset.get("in_memory_gb", 4), "dataset.in_memory_gb", allow_zero=True,
                                      hint="It is the most GB a side's images may take as one tensor (0: never).")
                      * 2**30),
        # small datasets live on the GPU and are augmented there, a batch at a time
        device="cuda" if uses_gpu(cfg) and dataset.get("on_device", True) else None,
    )


def uses_gpu(cfg: DictConfig) -> bool:
    """True when the run's trainer will put the model on a CUDA GPU."""
    return str(cfg.trainer.get("accelerator", "cpu")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def build_cache(cfg: DictConfig) -> TensorCache | None:
    """The process-wide tensor cache under ``paths.cache_dir``; None with ``cache=false``.

    Entries beyond ``cache_max_gb`` on disk are deleted, least recently used first.
    """
    if not cfg.get("cache", True):
        return None
    limit = cfg.get("cache_max_gb", 20)
    if limit is not None:
        limit = positive_number(limit, "cache_max_gb", hint="It is the cache's disk limit in GB; null for none.")
    return shared_cache(str(cfg.paths.cache_dir), disk_bytes=None if limit is None else int(limit * 2**30))


def build_model(cfg: DictConfig, num_classes: int, in_channels: int) -> nn.Module:
    """A freshly initialised backbone of the configured architecture."""
    return instantiate_plain(cfg.model.builder, num_classes=num_classes, in_channels=in_channels)


def build_logger(cfg: DictConfig, prefix: str = ""):
    """Every logger the config selects (``logger=many``: CSV and W&B) as one :class:`~unlearning.loggers.Loggers`
    list, or False for ``logger=none``; ``prefix`` keeps a method's curves apart (unlearning.loggers)."""
    return build_loggers(cfg.get("logger"), prefix) or False


def curve_logger(cfg: DictConfig, logger: Any, overrides: dict[str, Any]) -> Any:
    """The logger a trainer gets: ``logger`` itself, or the run's loggers under a prefix.

    A string is that prefix (``"reference"``: the retrained reference's training). ``False`` stays
    "no logger", except for a fit that trains (``max_epochs`` > 0) in a run with
    ``log_method_curves: true``: the unlearn job hands every method a trainer factory with
    ``False``, and a training-based method's loss curves then go to the run's loggers under the
    method's name (``scrub-unlearn/forget_loss``). Weight-editing methods (SSD) fit 0 epochs and log nothing.
    """
    if isinstance(logger, str):
        return build_logger(cfg, prefix=logger)
    trains = int(overrides.get("max_epochs") or 0) > 0
    if isinstance(logger, Loggers) and not logger.prefix and trains and cfg.get("job") == "unlearn":
        # train.py's training inside an unlearn run (train_if_missing): the source model's curves get
        # their own prefix and CSV folder, or the run's final metrics (same logs/ folder) would delete them
        return build_logger(cfg, prefix="source")
    if logger is False and trains and cfg.get("log_method_curves") and cfg.get("method") is not None:
        return build_logger(cfg, prefix=str(cfg.method.name))
    return logger


def config_callbacks(cfg: DictConfig, has_logger: bool) -> list[L.Callback]:
    """The Lightning callbacks of ``cfg.callbacks`` (conf/callbacks/: ``name: {_target_: ..., args}``).

    Callbacks that only report to a logger (learning rate, device statistics) raise in Lightning
    when the trainer has none; they are left out of such trainers (``logger=none``, a method's fit
    without curves) instead of failing the run.
    """
    from lightning.pytorch.callbacks import DeviceStatsMonitor, LearningRateMonitor

    built = []
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None or spec.get("_target_") is None:
            continue
        callback = instantiate_plain(spec)
        if not isinstance(callback, L.Callback):
            raise UserError(f"callbacks.{name} built a {type(callback).__name__}, not a Lightning Callback; "
                            "its _target_ must name a lightning.pytorch.callbacks.Callback subclass.")
        if has_logger or not isinstance(callback, LearningRateMonitor | DeviceStatsMonitor):
            built.append(callback)
    return built


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.trainer, resolve=True)


def make_trainer(cfg: DictConfig, logger: Any = False, **overrides: Any) -> L.Trainer:
    """A Lightning Trainer from ``cfg.trainer`` with ``overrides`` on top; bad settings are a UserError.

    ``logger``: a Lightning logger or list of them, False (none; see :func:`curve_logger` for the one
    exception), or a prefix string for the run's own loggers. The callbacks of ``cfg.callbacks`` are added.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    options = trainer_kwargs(cfg)
    options.update(logger=curve_logger(cfg, logger, overrides))
    options.update(overrides)
    options.setdefault("enable_model_summary", False)
    options["callbacks"] = [*(options.get("callbacks") or []), *config_callbacks(cfg, has_logger=bool(options["logger"]))]
    try:
        return L.Trainer(**options)
    except (MisconfigurationException, ValueError, TypeError) as error:
        settings = ", ".join(f"trainer.{key}={value}" for key, value in trainer_kwargs(cfg).items()
                             if key in ("accelerator", "devices", "strategy", "num_nodes", "precision"))
        raise UserError(f"the trainer settings do not work here: {str(error).splitlines()[0]} (got {settings}). "
                        "Use trainer=cpu, trainer=gpu or trainer=ddp, or fix the value named above "
                        "(accelerator: cpu, gpu, auto; precision: 32-true, 16-mixed, bf16-mixed).") from None
