"""Hyperparameter search: persisted Optuna studies that resume, and the ``optimized_metric`` a run returns.

The fast tests use Optuna directly (the storage that SQLAlchemy 2 broke, the resumable sampler) and
the metric lookup on composed configs; the slow one runs unlearn.py's Optuna search twice on
digits with one sqlite study and reads the study back.
"""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from tests.conftest import QUIET, compose_config, run_cli
from unlearning.errors import UserError
from unlearning.jobs.search import check_optimized_metric, metric_of, resumable_tpe, trials_in_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def square(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -10, 10) ** 2


def test_sqlite_study_is_kept_and_resumed(tmp_path):
    """The storage the Optuna config suggests: a second process-like round finds the first one's trials."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for expected in (2, 4):
        study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
        study.optimize(square, n_trials=2)
        assert len(study.trials) == expected
    assert trials_in_study(storage, "s") == 4 and trials_in_study(storage, "other") == 0
    assert trials_in_study(None, "s") == 0


def test_resumed_tpe_does_not_repeat_the_first_trials(tmp_path):
    """With a fixed seed a plain TPE sampler repeats its random start-up points on resume; ours moves on."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def round_of_three(sampler) -> list[float]:
        study = optuna.create_study(study_name="s", storage=storage, sampler=sampler, load_if_exists=True)
        study.optimize(square, n_trials=3)
        return [t.params["x"] for t in study.trials[-3:]]

    first = round_of_three(resumable_tpe(seed=0, storage=storage, study_name="s", n_startup_trials=10))
    second = round_of_three(resumable_tpe(seed=0, storage=storage, study_name="s", n_startup_trials=10))
    assert not set(first) & set(second), "the resumed study drew the same start-up points again"
    plain = round_of_three(optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    assert plain == first, "a plain seeded TPE sampler repeats the first round (why resumable_tpe exists)"


def test_optimized_metric_names_are_checked_before_any_work():
    cfg = compose_config("unlearn", ["hparams_search=ssd_optuna"])
    assert cfg.optimized_metric == "objective" and check_optimized_metric(cfg) == "objective"
    for good in ("metrics.unlearned.forget_test_acc", "method_time_s"):
        assert check_optimized_metric(compose_config("unlearn", [f"optimized_metric={good}"])) == good
    for bad in ("accuracy", "metrics.unlearned", "metrics.later.tow"):
        with pytest.raises(UserError, match="not a number a run records"):
            check_optimized_metric(compose_config("unlearn", [f"optimized_metric={bad}"]))
    with pytest.raises(UserError, match="evaluation.reference=retrain"):
        check_optimized_metric(compose_config("unlearn", ["optimized_metric=metrics.relative.tow"]))
    cfg = compose_config("unlearn", ["optimized_metric=metrics.relative.tow", "evaluation.reference=retrain"])
    assert check_optimized_metric(cfg) == "metrics.relative.tow"


def test_metric_of_a_record_names_what_exists():
    record = {"objective": 3.5, "metrics": {"unlearned": {"forget_test_acc": 0.0, "per_class_test_acc": [1, 2]}}}
    assert metric_of(record, "objective") == 3.5
    assert metric_of(record, "metrics.unlearned.forget_test_acc") == 0.0
    with pytest.raises(UserError, match="metrics.unlearned has no 'tow'; it has forget_test_acc, per_class"):
        metric_of(record, "metrics.unlearned.tow")
    with pytest.raises(UserError, match="not a number"):
        metric_of(record, "metrics.unlearned.per_class_test_acc")


@pytest.mark.e2e
def test_optuna_study_in_sqlite_resumes_with_real_runs(trained_root, tmp_path):
    """3 SSD trials on digits, the command stops, the same command again: the study holds 6 trials,
    each with the value ``optimized_metric`` names in its run's results.json, none repeated."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = "digits3"
    command = ["-m", "hparams_search=ssd_optuna", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}",
               f"hydra.sweeper.study_name={name}", "optimized_metric=metrics.unlearned.retain_test_acc",
               "hydra.sweeper.direction=maximize", "method.batch_size=256", "evaluation.strong_mia=false",
               "evaluation.probe=false", *QUIET]
    sweeps = [tmp_path / "first", tmp_path / "second"]
    for sweep in sweeps:
        run_cli("unlearn.py", *command, f"hydra.sweep.dir={sweep}", root=trained_root, check=True, timeout=900)
    study = optuna.load_study(study_name=name, storage=storage)
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    records = [json.loads(p.read_text()) for sweep in sweeps for p in sorted(sweep.glob("*/results.json"),
                                                                            key=lambda p: int(p.parent.name))]
    assert len(records) == 6
    for trial, record in zip(study.trials, records, strict=True):
        assert trial.value == pytest.approx(record["metrics"]["unlearned"]["retain_test_acc"])
        assert trial.params["method.alpha"] == pytest.approx(record["method_info"]["alpha"])
    alphas = [t.params["method.alpha"] for t in study.trials]
    assert len(set(alphas)) == 6, f"the resumed study repeated trials: {alphas}"
    best = yaml.safe_load((sweeps[1] / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(study.best_value)
