"""scripts/auto_ssd_table.py: the README's fixed-vs-auto table is computed from results.json files
(clean rule, counts, the auto mode's choices), so its arithmetic is checked here."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.auto_ssd_table import main


def _write(folder: Path, name: str, *, method: str, task: str, forget: str, alpha, forget_test: float,
           retain_test: float, info: dict | None = None) -> None:
    run = folder / name
    run.mkdir(parents=True)
    result = {
        "status": "complete", "job": "unlearn", "method": method, "task": task, "forget": forget,
        "forget_target": forget, "method_time_s": 2.0,
        "metrics": {
            "original": {"retain_test_acc": 96.0, "forget_test_acc": 97.0, "forget_train_acc": 99.0},
            "unlearned": {"retain_test_acc": retain_test, "forget_test_acc": forget_test,
                          "forget_train_acc": 40.0, "mia": 0.1},
        },
        "method_info": {"alpha": alpha, **(info or {})},
        "config": {"dataset": {"image_size": None}, "model": {}},
    }
    (run / "results.json").write_text(json.dumps(result))


def test_compact_table_applies_the_clean_rule_per_digit(tmp_path, capsys):
    searched = {"searched": True, "chosen_alpha": 42.0, "chosen_scope": 0.3, "n_steps": 1, "n_trials": 6,
                "work": {"cost_ratio": 1.6}}
    _write(tmp_path, "0", method="ssd", task="fullclass", forget="3", alpha=10.0, forget_test=0.0, retain_test=11.1)
    _write(tmp_path, "1", method="ssd", task="fullclass", forget="3", alpha="auto", forget_test=0.0,
           retain_test=95.0, info=searched)
    _write(tmp_path, "2", method="ssd", task="fullclass", forget="5", alpha=10.0, forget_test=5.0, retain_test=93.0)
    _write(tmp_path, "3", method="ssd", task="fullclass", forget="5", alpha="auto", forget_test=5.4,
           retain_test=96.0, info=searched)
    assert main(["--compact", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| 3 | 0.0 / 11.1 (+84.9) | 0.0 / 95.0 (+1.0) * |" in lines
    # exactly at both limits (5 % forgotten, 3 points lost) is clean; 5.4 % is not
    assert "| 5 | 5.0 / 93.0 (+3.0) * | 5.4 / 96.0 (+0.0) |" in lines
    assert "| clean | **1/2** | **1/2** |" in lines


def test_detailed_table_names_the_auto_choice_and_random_runs_that_were_not_searched(tmp_path, capsys):
    _write(tmp_path, "0", method="lfssd", task="random", forget="100 random samples (seed 0)", alpha="auto",
           forget_test=float("nan"), retain_test=95.5,
           info={"searched": False, "chosen_alpha": 10.0, "n_trials": 0})
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not searched: alpha 10" in out
    _write(tmp_path, "1", method="ssd", task="random", forget="100 random samples (seed 0)", alpha="auto",
           forget_test=float("nan"), retain_test=95.5,
           info={"searched": False, "chosen_alpha": None, "n_trials": 0})  # the target said: nothing to forget
    assert main([str(tmp_path)]) == 0
    assert "not searched: nothing dampened" in capsys.readouterr().out
    assert main(["--compact", str(tmp_path)]) == 0
    compact = capsys.readouterr().out
    assert "Df-train % / Dr-test %" in compact and "| clean |" not in compact
    assert "40.0 / 95.5 (+0.5)" in compact


def test_no_results_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "no complete results.json" in capsys.readouterr().err
