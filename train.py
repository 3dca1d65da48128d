"""Train a classifier: `python train.py dataset=cifar20 model=resnet18` (see conf/train.yaml)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from unlearning.cli import preflight, run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from unlearning.jobs.train import train_job  # heavy imports after the preflight

    return run_job(train_job, cfg)


if __name__ == "__main__":
    preflight(Path(__file__).parent / "conf", "train", sys.argv[1:])
    main()
