"""Unlearn: `python unlearn.py method=lfssd dataset=cifar100 task=subclass` (see conf/unlearn.yaml)."""

import hydra
from omegaconf import DictConfig

from unlearning.cli import run_job
from unlearning.jobs.unlearn import unlearn_job


@hydra.main(version_base="1.3", config_path="conf", config_name="unlearn")
def main(cfg: DictConfig) -> float | None:
    return run_job(unlearn_job, cfg)


if __name__ == "__main__":
    main()
