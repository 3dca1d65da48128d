"""Where trained source models are published, and what their metadata says about them.

train.py publishes a model under ``paths.checkpoint_dir`` at a name made of what it was
trained for (dataset, label kind, architecture, image size, seed); unlearn.py looks it up
there by the same name and checks the metadata before trusting it. Both sides use these
functions, so that neither job has to import the other to agree on a path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unlearning.data.corruption import task_corruption_key
from unlearning.models.checkpoints import checkpoint_name
from unlearning.reproducibility import seed_of


def corruption_key_of(cfg: DictConfig) -> str | None:
    """The key of the corrupted D (``task=poison|mislabel``) the model is trained on; None for clean D."""
    task = cfg.get("task")
    if task is None:
        return None
    return task_corruption_key(OmegaConf.to_container(task, resolve=True))


def source_name(cfg: DictConfig, label_kind: str, input_size: int, seed: int) -> str:
    """The registry name of the source model trained with ``seed`` (references and shadows are named after it).

    A model trained on poisoned or mislabelled data carries its corruption's key
    (``...-seed0-poison-1a2b3c4d5e``): it is another model than the clean one.
    """
    name = checkpoint_name(cfg.dataset.name, label_kind, cfg.model.name, input_size, seed)
    key = corruption_key_of(cfg)
    return f"{name}-{key}" if key else name


def registry_path(cfg: DictConfig, label_kind: str, input_size: int) -> Path:
    """Where the model trained with ``cfg.seed`` for (dataset, labels, model, size) is published."""
    return Path(cfg.paths.checkpoint_dir) / source_name(cfg, label_kind, input_size, seed_of(cfg))


def model_metadata(cfg: DictConfig, data, **extra: Any) -> dict[str, Any]:
    """What unlearn.py checks before it trusts a checkpoint, plus provenance."""
    return {
        "dataset": cfg.dataset.name,
        "label_kind": data.label_kind,
        "model": cfg.model.name,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "image_size": data.input_size,
        "channels": data.channels,
        "model_config": OmegaConf.to_container(cfg.model, resolve=True),
        "seed": int(cfg.seed),
        "corruption_key": data.corruption.key if getattr(data, "corruption", None) is not None else None,
        "corruption": data.corruption.metadata() if getattr(data, "corruption", None) is not None else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
