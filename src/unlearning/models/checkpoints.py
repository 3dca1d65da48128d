"""Model checkpoints: safetensors weights plus a metadata.json, written atomically.

Weights are stored as safetensors, which cannot execute code on load. Lightning ``.ckpt``
or ``.pt`` files are accepted too, but only through ``torch.load(weights_only=True)``, so
a pickle crafted to run code is refused.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearning.errors import UserError
from unlearning.io import atomic_write_directory

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"


def checkpoint_name(dataset: str, label_kind: str, model: str, image_size: int, seed: int) -> str:
    """Folder name under the checkpoint directory where train.py saves and unlearn.py looks.

    The training seed is part of the key: a result is a claim over several training runs,
    so models of different seeds must live side by side (``seed=0,1,2`` is one multirun).
    """
    return f"{dataset}-{label_kind}-{model}-{image_size}px-seed{seed}"


def save_checkpoint(directory: str | Path, model: nn.Module, metadata: dict[str, Any], replace: bool = True) -> Path:
    """Write ``model.safetensors`` and ``metadata.json`` into ``directory``, as one atomic step.

    Both files are written into a hidden staging folder that is then renamed to
    ``directory`` (see :func:`unlearning.io.atomic_write_directory`): a save killed at any
    moment leaves the previous checkpoint, or none, but never new weights beside old
    metadata or a truncated file under the real name. ``replace=False`` keeps an existing
    checkpoint (``FileExistsError``), even one published by another process meanwhile.
    """
    directory = Path(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    text = json.dumps(metadata, indent=2, default=str) + "\n"

    def fill(staging: Path) -> None:
        save_file(state, str(staging / WEIGHTS_FILE))
        (staging / METADATA_FILE).write_text(text)

    return atomic_write_directory(directory, fill, replace=replace)


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
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            payload = torch.load(str(weights), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _refusal_reason(error)
        if reason is None:
            raise _corrupt(weights, error) from None
        raise UserError(f"checkpoint {weights} was refused: besides tensors it holds pickled Python objects "
                        f"({reason}), and unpickling those could run arbitrary code. Only {WEIGHTS_FILE} "
                        "folders from train.py, .safetensors files and .pt/.ckpt files of plain tensors are "
                        "loaded; re-save a trusted model with `safetensors.torch.save_file(model.state_dict(), "
                        "'model.safetensors')`.") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise _corrupt(weights, error) from None
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):  # a Lightning .ckpt
        state = {str(k).removeprefix("model."): v for k, v in payload["state_dict"].items()}
        embedded = payload.get("unlearning_metadata")
        payload, metadata = state, embedded if isinstance(embedded, dict) else None
    else:
        metadata = None
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload, metadata
    raise UserError(f"checkpoint {weights} holds no state dict of tensors (a dict of name -> tensor, or a "
                    "Lightning .ckpt with one under 'state_dict'); save `model.state_dict()` instead.")


def _refusal_reason(error: pickle.UnpicklingError) -> str | None:
    """What torch's long refusal says it would not build (e.g. ``GLOBAL posix.system``); None if not a refusal."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return f"the first one it refused to build is {found.group(1)}" if found else None


def _corrupt(weights: Path, error: BaseException) -> UserError:
    found = re.search(r"Unsupported operand \d+|invalid load key[^\n]*", str(error))
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = found.group(0).rstrip(".") if found else next(
        (line for line in lines if "Weights only load failed" not in line and "weights_only" not in line),
        type(error).__name__)
    return UserError(f"checkpoint {weights} is truncated or corrupt and cannot be read ({reason}). "
                     "Retrain it with train.py or point checkpoint=PATH at an intact copy.")


def _load_metadata(metadata_path: Path) -> dict[str, Any]:
    if not metadata_path.is_file():
        raise UserError(f"checkpoint metadata {metadata_path} is missing; train.py writes it beside the weights "
                        "and unlearn.py needs it to check the checkpoint matches the task.")
    try:
        metadata = json.loads(metadata_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"checkpoint metadata {metadata_path} is corrupt ({error}); train.py writes it as a "
                        "JSON object beside the weights. Retrain, or restore an intact copy.") from None
    if not isinstance(metadata, dict):
        raise UserError(f"checkpoint metadata {metadata_path} is not a JSON object; train.py writes one with "
                        "dataset, label_kind, model and num_classes.")
    return metadata


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
