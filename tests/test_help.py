"""``--help`` of the entry points: what the app does, the five commands, the docs, the config groups."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

FIVE_COMMANDS = ("make demo", "python train.py seed=0", "python unlearn.py method=lfssd task.forget=8",
                 "python audit.py method=ssd", "python -m unlearning.report DIR")


def help_text(script: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(("script", "says"), [
    ("unlearn.py", ("unlearn.py: make a trained image classifier forget", "hydra/launcher=slurm",
                    "hparams_search=ssd_optuna hydra.sweeper.storage=sqlite")),
    ("train.py", ("train.py: train the image classifier that unlearning starts from", "checkpoints/<dataset>",
                  "python train.py -m seed=0,1,2")),
    ("audit.py", ("audit.py: U-LiRA", "audit.only_shadow")),
])
def test_help_says_what_the_app_does_and_where_to_go_next(script, says):
    text = help_text(script)
    for phrase in (*says, *FIVE_COMMANDS, "README.md", "docs/", "methods.md", "slurm.md", "--cfg job",
                   "== Config groups"):
        assert phrase in text, f"{script} --help lacks {phrase!r}:\n{text}"
    groups = {line.split(":")[0]: line for line in text.splitlines() if ": " in line and not line.startswith(" ")}
    assert "ssd" in groups["method"] and "digits" in groups["dataset"] and "slurm" not in groups.get("method", "")
    assert "powered by Hydra" not in text, "Hydra's generic page is still shown"


def test_cfg_job_shows_the_label_set_a_subclass_run_uses():
    """task=subclass switches the model to coarse labels at run time; --cfg job says so (task.labels)."""
    from tests.conftest import compose_config
    from unlearning.jobs.builders import build_datamodule, build_task

    printed = subprocess.run([sys.executable, str(ROOT / "unlearn.py"), "task=subclass", "--cfg", "job"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert printed.returncode == 0 and "  labels: coarse" in printed.stdout, printed.stdout[-2000:]
    cfg = compose_config("unlearn", ["task=subclass"])
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    assert data.label_kind == cfg.task.labels == "coarse"
    assert "labels" not in compose_config("unlearn", ["task=fullclass"]).task
