"""Where trained source models are published, and what their metadata says about them.

train.py publishes a model under the checkpoint directory at a name made of what it was
trained for (:class:`ModelIdentity`); unlearn.py looks it up there by the same name and checks
the metadata before trusting it. Both sides use these functions, so that neither job has to
import the other to agree on a path. The name carries a digest of everything that makes the
model another model but is too long to spell out (:attr:`ModelIdentity.recipe_key`: which
images D and the validation split are, the training recipe, the augmentation): change any of
it and a new model is trained, instead of an old one being reused silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from unlearning.fingerprint import digest_json
from unlearning.models.checkpoints import checkpoint_name


@dataclass(frozen=True)
class ModelIdentity:
    """What a trained source model is: its name in the registry is made of these fields."""

    dataset: str
    label_kind: str
    model: str
    image_size: int
    seed: int
    #: Digest of the data selection and training recipe (:func:`recipe_key`).
    recipe_key: str
    #: The key of the corrupted D (``task=poison|mislabel``) the model is trained on; None for clean D.
    corruption_key: str | None = None

    @property
    def name(self) -> str:
        """``<dataset>-<labels>-<model>-<size>px-seed<N>-<recipe key>[-<corruption key>]``.

        A model trained on poisoned or mislabelled data carries its corruption's key
        (``...-poison-1a2b3c4d5e``): it is another model than the clean one.
        """
        name = f"{checkpoint_name(self.dataset, self.label_kind, self.model, self.image_size, self.seed)}" \
               f"-{self.recipe_key}"
        return f"{name}-{self.corruption_key}" if self.corruption_key else name


def recipe_key(selection: dict[str, Any], recipe: dict[str, Any]) -> str:
    """A short digest of what the model was trained on and how (``selection``: builder settings without
    paths, ``dataset.split``, debug subset; ``recipe``: schedule, augmentation, model settings)."""
    return "r" + digest_json({"selection": selection, "recipe": recipe})[:8]


def registry_path(checkpoint_dir: str | Path, identity: ModelIdentity) -> Path:
    """Where the model of ``identity`` is published."""
    return Path(checkpoint_dir) / identity.name


def model_metadata(identity: ModelIdentity, data, model_config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What unlearn.py checks before it trusts a checkpoint, plus provenance."""
    corruption = getattr(data, "corruption", None)
    return {
        "dataset": identity.dataset,
        "label_kind": data.label_kind,
        "model": identity.model,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "image_size": data.input_size,
        "channels": data.channels,
        "model_config": model_config,
        "seed": identity.seed,
        "recipe_key": identity.recipe_key,
        "corruption_key": corruption.key if corruption is not None else None,
        "corruption": corruption.metadata() if corruption is not None else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
