"""Helpers for the reliability tests: tiny checkpoints, in-process entry points, file listings.

A randomly initialised ``vit_tiny`` (16 px digits) unlearns in seconds, so the tests that
only need *a* checkpoint of the right shape (safety, atomicity, bad input, determinism)
do not wait for the session-trained ResNet18.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from omegaconf import open_dict

from tests.conftest import CONF, QUIET, compose_config
from unlearning.jobs.builders import build_model, published_model_path
from unlearning.models.checkpoints import save_checkpoint

#: Overrides for quick unlearning runs on a random tiny ViT that never trains a missing model.
TINY = ["model=vit_tiny", "train_if_missing=false", *QUIET]
#: Files whose presence means a run got as far as producing results.
RESULT_NAMES = {"results.json", "model.safetensors"}


def save_random_checkpoint(checkpoint_dir: Path, dataset: str = "digits", model: str = "vit_tiny",
                           labels: str = "fine", num_classes: int = 10, channels: int = 1, image_size: int = 16,
                           seed: int = 0, **metadata_extra) -> Path:
    """A checkpoint of a randomly initialised model, with the metadata train.py writes."""
    cfg = compose_config("train", [f"model={model}", f"dataset={dataset}", f"seed={seed}",
                                   f"paths.checkpoint_dir={checkpoint_dir}"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_model(cfg, num_classes, channels)
    target = published_model_path(cfg, labels, image_size)
    metadata = {"dataset": dataset, "label_kind": labels, "model": model, "num_classes": num_classes,
                "class_names": [str(i) for i in range(num_classes)], "image_size": image_size,
                "channels": channels, "seed": seed, "test_acc": None, **metadata_extra}
    return save_checkpoint(target, network, metadata)


def tiny_checkpoint(root: Path, labels: str = "fine") -> Path:
    """Where :func:`make_tiny_root` put the random vit_tiny model of ``labels``."""
    cfg = compose_config("train", ["model=vit_tiny", f"paths.root_dir={root}"])
    return published_model_path(cfg, labels, 16)


def make_tiny_root(root: Path) -> Path:
    """``root/checkpoints`` with random vit_tiny models for digits, fine (10 classes) and coarse (5)."""
    save_random_checkpoint(root / "checkpoints")
    save_random_checkpoint(root / "checkpoints", labels="coarse", num_classes=5)
    return root


def files_under(root: Path) -> set[str]:
    """Every file and folder below ``root``, relative, as strings."""
    return {str(p.relative_to(root)) for p in Path(root).rglob("*")}


def digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def result_like(paths: set[str]) -> list[str]:
    """The paths that look like the output of a run that got somewhere."""
    return sorted(p for p in paths if Path(p).name in RESULT_NAMES or Path(p).name in ("unlearned", "model"))


def job_config(entry: str, overrides: list[str], run_dir: Path):
    """The config a Hydra task function receives (no ``hydra`` key; HydraConfig set, output dir ``run_dir``)."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_config(entry, [*overrides, f"hydra.run.dir={run_dir}"])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_entry(entry: str, overrides: list[str], run_dir: Path) -> int:
    """Run ``train.py``/``unlearn.py`` in this process as the CLI does: preflight, compose, run_job.

    ``run_dir`` is the run folder unless the overrides set ``hydra.run.dir`` themselves.
    Returns the exit status (0 when the job returned). Output goes to the real stdout and
    stderr, for ``capsys`` to read.
    """
    from unlearning.cli import preflight, run_job
    from unlearning.jobs.train import train_job
    from unlearning.jobs.unlearn import unlearn_job

    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")]
    if given:
        run_dir = Path(given[-1])
        overrides = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    try:
        preflight(CONF, entry, [*overrides, f"hydra.run.dir={run_dir}"])
        cfg = job_config(entry, overrides, run_dir)
        run_job(train_job if entry == "train" else unlearn_job, cfg)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def can_create_files_in(folder: str) -> bool:
    try:
        probe = Path(folder) / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False
