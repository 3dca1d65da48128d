"""Shared fixtures: composed configs, a trained digits model (trained once per session), CIFAR files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tests.fixtures.cifar_files import trust_generated_files, write_cifar10, write_cifar100

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Tests run on the CPU with few threads so that parallel jobs (DDP, SLURM) do not starve.
torch.set_num_threads(2)

#: Overrides that keep test runs quiet and out of the user's folders.
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with Hydra's compose API (``hydra:`` resolvers included)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides or []), return_hydra_config=True)


def run_cli(script: str, *overrides: str, root: Path, timeout: int = 600, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python <script> overrides...`` in a subprocess with all paths under ``root``."""
    environment = {**os.environ, "UNLEARNING_ROOT": str(root), "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides], cwd=root, env=environment,
        capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def published_path(root: Path, *overrides: str, labels: str = "fine", seed: int = 0, name: str = "train") -> Path:
    """Where train.py publishes the model of ``overrides`` (training seed ``seed``) under ``root``.

    The registry name carries a digest of the data selection and recipe, so tests ask the
    registry instead of spelling names out.
    """
    from unlearning.jobs.builders import build_datamodule, published_model_path

    cfg = compose_config(name, [f"paths.root_dir={root}", f"labels={labels}", f"seed={seed}", *QUIET, *overrides])
    data = build_datamodule(cfg, None, labels=labels)
    data.setup()
    return published_model_path(cfg, data.label_kind, data.input_size)


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory) -> Path:
    """A root folder holding ResNet18 trained on digits (fine and coarse labels, 8 px), default recipe.

    Trained once per session and shared by every test that unlearns; tests point
    ``UNLEARNING_ROOT`` or ``paths.checkpoint_dir`` at it. Both are the models every user starts
    from (the recipe is part of a model's registry name, so a shortened stand-in would not be
    found by a default run).
    """
    from unlearning.jobs.train import train

    reuse = os.environ.get("UNLEARNING_TEST_TRAINED_ROOT")
    if reuse:  # developers: reuse models trained earlier (root/checkpoints/<name>/) instead of retraining
        return Path(reuse)
    root = tmp_path_factory.mktemp("trained")
    for labels in ("fine", "coarse"):
        cfg = compose_config("train", [f"paths.root_dir={root}", f"labels={labels}", *QUIET])
        train(cfg, output_dir=root / "outputs" / f"train-{labels}")
    return root


def stand_in_for_seed(root: Path, seed: int) -> None:
    """Publish the seed-0 digits models under training seed ``seed`` too (same weights, metadata says ``seed``).

    For tests of sweep mechanics over ``seed=0,1`` (reports, resume): they need a model per
    training seed, not a second training run. Tests of what a method does use seed 0.
    """
    import json
    import shutil

    for labels in ("fine", "coarse"):
        source = published_path(root, labels=labels)
        target = published_path(root, labels=labels, seed=seed)
        if target.exists():
            continue
        staging = target.with_name(target.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        metadata = json.loads((staging / "metadata.json").read_text())
        (staging / "metadata.json").write_text(json.dumps({**metadata, "seed": seed, "stand_in_of_seed": 0}, indent=2))
        staging.rename(target)


@pytest.fixture(scope="session")
def digits_checkpoint(trained_root) -> Path:
    return published_path(trained_root)


@pytest.fixture(scope="session")
def coarse_checkpoint(trained_root) -> Path:
    return published_path(trained_root, labels="coarse")


@pytest.fixture()
def cifar_root(tmp_path, monkeypatch) -> Path:
    """Tiny CIFAR-10 and CIFAR-100 trees in torchvision's real format, trusted by torchvision."""
    root = tmp_path / "data"
    write_cifar10(root)
    write_cifar100(root)
    trust_generated_files(monkeypatch, root)
    return root
