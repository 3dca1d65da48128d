"""Content digests of the inputs that importances and predictions depend on.

The tensor cache (:mod:`unlearning.cache`) keys its entries by these digests, so that an
entry is reused only when the model weights, the images, the transform, the sample
indices (and, where they matter, the labels) are byte-for-byte what they were. Names or
paths alone are never trusted: two checkpoints at one path, or a dataset folder whose files
changed, give different digests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

DIGEST_SIZE = 20  # bytes of BLAKE2b/SHA: 160 bits, collisions are not a practical concern


def _hasher():
    # SHA-256 uses the CPU's SHA extensions where present: about 3x faster than BLAKE2b here.
    return hashlib.sha256()


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of ``tensor`` in contiguous (row-major) order, whatever its device and layout."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def digest_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """One hex digest of named tensors: names, dtypes, shapes and values, in the given order."""
    h = _hasher()
    for name, tensor in tensors:
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor_bytes(tensor))
    return h.hexdigest()[: 2 * DIGEST_SIZE]


def weights_digest(model: nn.Module) -> str:
    """Digest of every parameter and buffer (batch-norm statistics change eval-mode outputs too)."""
    return digest_tensors(model.state_dict().items())


def digest_array(array: np.ndarray) -> str:
    h = _hasher()
    array = np.ascontiguousarray(array)
    h.update(f"{array.dtype.str}|{array.shape}|".encode())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()[: 2 * DIGEST_SIZE]


def digest_json(value: Any) -> str:
    """Digest of a JSON-serialisable value with sorted keys (stable across processes and runs)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[: 2 * DIGEST_SIZE]


def image_source_digest(source: Any) -> str | None:
    """Digest of an image source's content, or None when it cannot be fingerprinted.

    In-memory arrays are hashed byte by byte; files by path, size and modification time
    (reading every image again would cost as much as the pass the cache saves). A custom
    source may define ``fingerprint() -> str`` itself.
    """
    own = getattr(source, "fingerprint", None)
    if callable(own):
        return str(own())
    array = getattr(source, "array", None)
    if isinstance(array, np.ndarray):
        return "array:" + digest_array(array)
    paths = getattr(source, "paths", None)
    if isinstance(paths, list | tuple):
        h = _hasher()
        for path in paths:
            stat = os.stat(path)
            h.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return "files:" + h.hexdigest()[: 2 * DIGEST_SIZE]
    return None


def dataset_digest(data: Any) -> str | None:
    """Digest of the data module's images (train and test), image format and eval transform.

    Memoised on the data module: the images do not change during a process. None when an
    image source cannot be fingerprinted (then nothing of this data is cached).
    """
    memo = getattr(data, "_unlearning_dataset_digest", None)
    if memo is not None:
        return memo or None
    bundle = data.bundle
    train, test = image_source_digest(bundle.train_images), image_source_digest(bundle.test_images)
    value = ""
    if train is not None and test is not None:
        value = digest_json({
            "name": bundle.name, "train": train, "test": test, "channels": bundle.channels,
            "native_size": bundle.native_size, "input_size": data.input_size,
            "transform": repr(getattr(data, "_eval_transform", None)),
            **_corruption_part(data),
        })
    data._unlearning_dataset_digest = value
    return value or None


def _corruption_part(data: Any) -> dict[str, Any]:
    """A poisoned or mislabelled D is other data: its key and trigger join the digest (absent for clean D)."""
    corruption = getattr(data, "corruption", None)
    if corruption is None:
        return {}
    return {"corruption": corruption.key, "trigger": repr(corruption.trigger)}


def split_digest(data: Any, split: str, with_labels: bool) -> str:
    """Digest of the sample indices of ``split`` in loader order (and of their labels if they matter)."""
    parts = {"side": "test" if split.endswith("test") else "train",
             "indices": digest_array(np.asarray(data.indices(split), dtype=np.int64))}
    if split == "triggered_test":  # the same indices as the test set, other images
        parts["triggered"] = True
    if with_labels:
        parts["labels"] = digest_array(np.asarray(data.labels_of(split), dtype=np.int64))
    return digest_json(parts)


def cache_key(parts: Mapping[str, Any]) -> str:
    """The file-name-safe key of an entry described by ``parts`` (all its inputs)."""
    return digest_json(dict(parts))
