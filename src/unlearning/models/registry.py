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

from unlearning.models.checkpoints import checkpoint_name
from unlearning.reproducibility import seed_of


def source_name(cfg: DictConfig, label_kind: str, input_size: int, seed: int) -> str:
    """The registry name of the source model trained with ``seed`` (references and shadows are named after it)."""
    return checkpoint_name(cfg.dataset.name, label_kind, cfg.model.name, input_size, seed)


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
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
