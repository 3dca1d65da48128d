"""The project's configs composed as train.py and unlearn.py compose them (Hydra's compose API)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose(name: str, overrides: list[str]) -> DictConfig:
    """``conf/<name>.yaml`` with ``overrides``, ``hydra:`` resolvers included (no job is launched)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
