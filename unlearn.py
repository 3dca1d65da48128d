"""Unlearn: `python unlearn.py method=lfssd dataset=cifar100 task=subclass` (see conf/unlearn.yaml)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from unlearning.cli import preflight, run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="unlearn")
def main(cfg: DictConfig) -> float | None:
    from unlearning.jobs.unlearn import unlearn_job  # heavy imports after the preflight

    return run_job(unlearn_job, cfg)


if __name__ == "__main__":
    preflight(Path(__file__).parent / "conf", "unlearn", sys.argv[1:])
    main()
