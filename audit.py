"""Audit: `python audit.py task=random method=ssd` runs U-LiRA against the method (see conf/audit.yaml)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from unlearning.cli import preflight, run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="audit")
def main(cfg: DictConfig) -> float | None:
    from unlearning.jobs.audit import audit_job  # heavy imports after the preflight

    return run_job(audit_job, cfg)


if __name__ == "__main__":
    preflight(Path(__file__).parent / "conf", "audit", sys.argv[1:])
    main()
