"""Model checkpoints: safetensors weights plus a metadata.json, written atomically.

Weights are stored as safetensors, which cannot execute code on load. Lightning ``.ckpt``
or ``.pt`` files are accepted too, but only through ``torch.load(weights_only=True)``, so
a pickle crafted to run code is refused.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearning.errors import UserError
from unlearning.io import atomic_write, atomic_write_json

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"


def checkpoint_name(dataset: str, label_kind: str, model: str, image_size: int) -> str:
    """Folder name under the checkpoint directory where train.py saves and unlearn.py looks."""
    return f"{dataset}-{label_kind}-{model}-{image_size}px"


def save_checkpoint(directory: str | Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``metadata.json`` into ``directory``.

    Metadata is written last: a folder with weights but no metadata is an interrupted save
    and is treated as missing.
    """
    directory = Path(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    atomic_write_json(directory / METADATA_FILE, metadata)
    return directory


def checkpoint_exists(directory: str | Path) -> bool:
    directory = Path(directory)
    return (directory / WEIGHTS_FILE).is_file() and (directory / METADATA_FILE).is_file()


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and metadata from a checkpoint folder, a ``.safetensors`` or a ``.ckpt``/``.pt`` file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist. Give checkpoint=PATH to a folder made by train.py "
                        f"(holding {WEIGHTS_FILE} and {METADATA_FILE}) or leave checkpoint unset to use the default.")
    if path.is_dir():
        weights, metadata_path = path / WEIGHTS_FILE, path / METADATA_FILE
    else:
        weights, metadata_path = path, path.parent / METADATA_FILE
    if not weights.is_file():
        raise UserError(f"checkpoint folder {path} has no {WEIGHTS_FILE}; it was not written by train.py "
                        "or its save was interrupted.")
    state, embedded = _load_weights(weights)
    metadata = embedded or _load_metadata(metadata_path)
    return state, metadata


def _load_weights(weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    if weights.suffix == ".safetensors":
        try:
            return load_file(str(weights)), None
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"checkpoint {weights} is truncated or corrupt and cannot be read ({error}). "
                            "Retrain it with train.py or point checkpoint=PATH at an intact copy.") from None
    try:
        payload = torch.load(str(weights), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UserError(f"checkpoint {weights} was refused: it contains objects that would run code when "
                        f"loaded, and only plain tensors are accepted ({str(error).splitlines()[0]}).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise UserError(f"checkpoint {weights} is truncated or corrupt and cannot be read ({error}).") from None
    if isinstance(payload, dict) and "state_dict" in payload:
        state = {k.removeprefix("model."): v for k, v in payload["state_dict"].items()}
        return state, payload.get("unlearning_metadata")
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload, None
    raise UserError(f"checkpoint {weights} holds no state dict of tensors.")


def _load_metadata(metadata_path: Path) -> dict[str, Any]:
    if not metadata_path.is_file():
        raise UserError(f"checkpoint metadata {metadata_path} is missing; train.py writes it beside the weights "
                        "and unlearn.py needs it to check the checkpoint matches the task.")
    try:
        return json.loads(metadata_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"checkpoint metadata {metadata_path} is corrupt ({error}).") from None


def check_compatible(metadata: dict[str, Any], expected: dict[str, Any], source: str | Path) -> None:
    """Refuse a checkpoint whose dataset, label kind, class count or model differ from the task's."""
    problems = [
        f"{key} is {metadata.get(key)!r} in the checkpoint but the task needs {value!r}"
        for key, value in expected.items()
        if metadata.get(key) != value
    ]
    if problems:
        raise UserError(f"checkpoint {source} does not match this run: " + "; ".join(problems)
                        + ". Train a matching model with train.py (same dataset, model and labels), or leave "
                        "checkpoint unset so that unlearn.py finds or trains the right one.")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise UserError(f"checkpoint {source} does not fit the configured model: "
                        f"{str(error).splitlines()[0]} {str(error).splitlines()[1:2]}") from None
    return model
