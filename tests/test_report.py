"""``python -m unlearning.report`` on real multiruns of unlearn.py on digits.

The default suite reads a cheap real sweep (method=baseline over two targets and two seeds,
evaluation only); the slow tests run a 2 x 2 alpha x lambda SSD sweep and a short Optuna
search through the CLI and read them too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import QUIET, ROOT, run_cli, stand_in_for_seed
from unlearning.jobs.unlearn import objective
from unlearning.report import main
from unlearning.report.collect import explain
from unlearning.runs import CLAIM_FILE

TABLE = "digits-fine-fullclass-resnet18"


def report(*paths: Path, out: Path) -> None:
    assert main([*map(str, paths), "--out", str(out)]) == 0


def results_of(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 150


def capture_figures(monkeypatch) -> dict[str, list[dict]]:
    """What each figure the report saves draws, per panel: bar heights/widths, heatmap cells, texts.

    A PNG's size says only that something was drawn; these say what (read from the matplotlib
    figure just before it is written and closed).
    """
    from matplotlib.container import BarContainer

    import unlearning.report.figures as figures

    drawn, real_save = {}, figures.save

    def save(fig, path):
        drawn[path.name] = [{
            "bars": [[(bar.get_height(), bar.get_width()) for bar in container]
                     for container in ax.containers if isinstance(container, BarContainer)],
            "spans": [(patch.get_x(), patch.get_width()) for patch in ax.patches
                      if patch.get_facecolor()[:3] == pytest.approx(matplotlib_rgb("tab:red"))],
            "images": [np.asarray(image.get_array(), dtype=float) for image in ax.images],
            "texts": [text.get_text() for text in ax.texts],
        } for ax in fig.axes if ax.get_label() != "<colorbar>"]
        return real_save(fig, path)

    monkeypatch.setattr(figures, "save", save)
    return drawn


def matplotlib_rgb(name: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(name)


@pytest.fixture(scope="module")
def baseline_sweep(trained_root, tmp_path_factory) -> Path:
    """4 real runs: the original model evaluated for forget targets 1 and 3, seeds 0 and 1."""
    sweep = tmp_path_factory.mktemp("baseline") / "sweep"
    stand_in_for_seed(trained_root, 1)
    run_cli("unlearn.py", "-m", "method=baseline", "task.forget=1,3", "seed=0,1", *QUIET,
            f"hydra.sweep.dir={sweep}", root=trained_root, check=True)
    return sweep


def test_report_tables_and_figures(baseline_sweep, tmp_path, capsys, monkeypatch):
    drawn = capture_figures(monkeypatch)
    out = tmp_path / "report"
    report(baseline_sweep, out=out)
    summary = pd.read_csv(out / f"{TABLE}.csv", dtype={"forget": str})
    assert list(summary["forget"]) == ["1", "3"] and list(summary["method"]) == ["baseline", "baseline"]
    assert list(summary["runs"]) == [2, 2] and list(summary["seeds"]) == ["0 1", "0 1"]
    runs = results_of(baseline_sweep)
    for _, row in summary.iterrows():
        mine = [r for r in runs if r["forget_target"] == row["forget"]]
        for metric, scale in (("retain_test_acc", 1), ("forget_test_acc", 1), ("mia", 100), ("zrf", 1)):
            values = np.array([r["metrics"]["unlearned"][metric] for r in mine]) * scale
            assert row[f"{metric}_mean"] == pytest.approx(values.mean())
            assert row[f"{metric}_std"] == pytest.approx(values.std(ddof=1), abs=1e-9)
    table = (out / f"{TABLE}.md").read_text()
    assert any(line.replace(" ", "").startswith("|forget|method|") for line in table.splitlines()) and "Dr-test %" in table and "MIA %" in table
    assert "time / retrain" not in table, "no retrain runs, no relative-time column"
    assert len([line for line in table.splitlines() if line.startswith("| 1 ") or line.startswith("| 3 ")]) == 2
    assert "±" in table
    for name in ("method_time", "per_class_1", "per_class_3"):
        assert_png(out / "figures" / f"{TABLE}_{name}.png")
        assert f"figures/{TABLE}_{name}.png" in (out / "report.md").read_text()
    assert len(pd.read_csv(out / "runs.csv")) == 4
    assert not (out / "missing.csv").exists()
    assert "4 runs, 1 table(s), 3 figure(s)" in capsys.readouterr().out
    # what the figures draw: each target's seed-0 record per class, before and after, the digit shaded
    for target in ("1", "3"):
        record = next(r for r in runs if r["forget_target"] == target and r["seed"] == 0)
        (panel,) = drawn[f"{TABLE}_per_class_{target}.png"]
        before, after = ([height for height, _ in bars] for bars in panel["bars"])
        assert before == pytest.approx(record["metrics"]["original"]["per_class_test_acc"])
        assert after == pytest.approx(record["metrics"]["unlearned"]["per_class_test_acc"])
        assert panel["spans"] == [pytest.approx((int(target) - 0.5, 1.0))], "the forgotten digit is shaded"
    # the time figure: baseline's microseconds are drawn at the 1 ms floor and said to be under it, n = 4 runs
    (panel,) = drawn[f"{TABLE}_method_time.png"]
    assert [width for _, width in panel["bars"][0]] == pytest.approx([1e-3])
    assert panel["texts"] == ["< 1 ms (n=4)"]


def test_sweep_heatmap_draws_the_mean_of_each_setting(baseline_sweep, tmp_path, monkeypatch):
    """A 2 x 2 alpha x lambda grid from the real records, relabelled with known accuracies per cell."""
    drawn = capture_figures(monkeypatch)
    cells = {(5.0, 0.5): (90.0, 40.0), (50.0, 0.5): (70.0, 10.0), (5.0, 1.0): (95.0, 60.0), (50.0, 1.0): (30.0, 0.0)}
    for (alpha, lambda_), result in zip(cells, results_of(baseline_sweep), strict=True):
        retain, forget = cells[alpha, lambda_]
        record = {**result, "method": "ssd", "forget_target": "3", "forget": "class 3",
                  "config": {**result["config"], "method": {**result["config"]["method"], "alpha": alpha,
                                                            "lambda_": lambda_}},
                  "metrics": {**result["metrics"], "unlearned": {**result["metrics"]["unlearned"],
                                                                 "retain_test_acc": retain, "forget_test_acc": forget}}}
        folder = tmp_path / "runs" / f"{alpha}-{lambda_}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(record))
    report(tmp_path / "runs", out=tmp_path / "report")
    retain_panel, forget_panel = drawn[f"{TABLE}_sweep_ssd.png"]
    # rows: lambda 0.5, 1 (origin lower); columns: alpha 5, 50
    expected = {panel: np.array([[cells[a, lam][i] for a in (5.0, 50.0)] for lam in (0.5, 1.0)])
                for i, panel in enumerate(("retain", "forget"))}
    np.testing.assert_array_equal(retain_panel["images"][0], expected["retain"])
    np.testing.assert_array_equal(forget_panel["images"][0], expected["forget"])
    assert retain_panel["texts"] == ["90.0", "70.0", "95.0", "30.0"]


def test_time_relative_to_retrain(baseline_sweep, tmp_path):
    """The comparison table's last column: each method's mean time over retrain's for the same target."""
    times = {("retrain", 0): 100.0, ("retrain", 1): 110.0, ("ssd", 0): 5.0, ("ssd", 1): 6.0}
    for i, result in enumerate(r for r in results_of(baseline_sweep) if r["forget_target"] == "3"):
        for method in ("retrain", "ssd"):  # the real runs' records, relabelled with known method times
            folder = tmp_path / "runs" / f"{method}{i}"
            folder.mkdir(parents=True)
            record = {**result, "method": method, "method_time_s": times[(method, result["seed"])]}
            (folder / "results.json").write_text(json.dumps(record))
    out = tmp_path / "report"
    report(tmp_path / "runs", out=out)
    summary = pd.read_csv(out / f"{TABLE}.csv").set_index("method")
    assert summary.loc["retrain", "time_vs_retrain"] == pytest.approx(1.0)
    assert summary.loc["ssd", "time_vs_retrain"] == pytest.approx(5.5 / 105)
    table = (out / f"{TABLE}.md").read_text()
    ssd_row = next(line for line in table.splitlines() if line.startswith("| 3 ") and "| ssd " in line)
    header = next(line for line in table.splitlines() if line.startswith("| forget "))
    headers = [cell.strip() for cell in header.strip("|").split("|")]
    cells = [cell.strip() for cell in ssd_row.strip("|").split("|")]
    assert cells[headers.index("time / retrain")] == f"{5.5 / 105:.3f}"


def test_clean_requests_are_counted_over_targets_and_seeds(baseline_sweep, tmp_path):
    """The verdict column (k/n per row) and the table of requests by outcome, from real records.

    The four baseline runs (targets 1 and 3, seeds 0 and 1) are relabelled as an "ssd" whose
    unlearned accuracies are set to three known outcomes, so every count is known.
    """
    outcomes = {("1", 0): (0.0, 0.0), ("1", 1): (4.0, 2.0), ("3", 0): (0.0, 80.0), ("3", 1): (60.0, 0.5)}
    for result in results_of(baseline_sweep):
        key = (result["forget_target"], result["seed"])
        forget, drop = outcomes[key]
        after = {**result["metrics"]["unlearned"], "forget_test_acc": forget,
                 "retain_test_acc": result["metrics"]["original"]["retain_test_acc"] - drop}
        folder = tmp_path / "runs" / f"{key[0]}-{key[1]}"
        folder.mkdir(parents=True)
        record = {**result, "method": "ssd", "metrics": {**result["metrics"], "unlearned": after}}
        (folder / "results.json").write_text(json.dumps(record))
    out = tmp_path / "report"
    report(tmp_path / "runs", out=out)
    summary = pd.read_csv(out / f"{TABLE}.csv", dtype={"forget": str}, keep_default_na=False).set_index(
        ["forget", "method"])
    assert summary.loc[("1", "ssd"), "clean"] == "2/2" and summary.loc[("3", "ssd"), "clean"] == "0/2"
    assert summary.loc[("1", "original"), "clean"] == "", "the model before unlearning gets no verdict"
    counts = pd.read_csv(out / f"{TABLE}-clean.csv", keep_default_na=False).set_index("method")
    assert counts.loc["ssd", ["requests", "clean", "collapsed", "not forgotten", "damaged"]].tolist() == [4, 2, 1, 1, 0]
    table = (out / f"{TABLE}.md").read_text()
    ssd_counts = next(line for line in table.splitlines() if line.startswith("| ssd "))
    cells = [cell.strip() for cell in ssd_counts.strip("|").split("|")]
    assert cells[:6] == ["ssd", "2 x 2", "2 of 4", "1", "0", "1"]
    # the runs carry the probe (on by default): its mean ± std over the four requests follows; no ToW without a reference
    probes = np.array([r["metrics"]["unlearned"]["probe_forget_test_acc"] for r in results_of(baseline_sweep)])
    assert cells[6:] == [f"{probes.mean():.1f} ± {probes.std():.1f}"]


def test_outcome_counts_against_the_reference_carry_the_gold_standard(baseline_sweep, tmp_path):
    """With a retrained reference, each run is judged against it (matches retraining, under-forgot,
    over-forgot, damaged, collapsed), the retrained model gets no row of its own (it matches itself),
    and the outcome table adds ToW and the probe per method: known values, known counts."""
    tows = {("1", 0): 0.9, ("1", 1): 0.7, ("3", 0): 0.5, ("3", 1): 0.3}
    for result in results_of(baseline_sweep):
        key = (result["forget_target"], result["seed"])
        original = result["metrics"]["original"]
        # the reference of target 3, seed 1 lost 5 points of Dr-test: the run above it is no damage
        retrained = {**original, "forget_test_acc": 0.0, "forget_train_acc": 0.0,
                     "retain_test_acc": original["retain_test_acc"] - (5.0 if key == ("3", 1) else 0.0)}
        unlearned = {**original, "forget_test_acc": 10.0 if key == ("1", 1) else 0.0, "forget_train_acc": 0.0,
                     "retain_test_acc": original["retain_test_acc"] - (5.0 if key == ("3", 0) else 0.0),
                     "probe_forget_test_acc": 80.0 + 10 * key[1]}
        folder = tmp_path / "runs" / f"{key[0]}-{key[1]}"
        folder.mkdir(parents=True)
        metrics = {**result["metrics"], "unlearned": unlearned, "retrained": retrained, "relative": {"tow": tows[key]}}
        (folder / "results.json").write_text(json.dumps({**result, "method": "ssd", "metrics": metrics}))
    out = tmp_path / "report"
    report(tmp_path / "runs", out=out)
    counts = pd.read_csv(out / f"{TABLE}-clean.csv", keep_default_na=False).set_index("method")
    assert "retrained" not in counts.index
    assert counts.loc["ssd", ["requests", "clean", "under-forgot", "over-forgot", "damaged", "collapsed"]].tolist() \
        == [4, 2, 1, 0, 1, 0]
    assert counts.loc["ssd", "tow_mean"] == pytest.approx(0.6)
    assert counts.loc["ssd", "probe_forget_test_acc_mean"] == pytest.approx(85.0)
    summary = pd.read_csv(out / f"{TABLE}.csv", dtype={"forget": str}, keep_default_na=False).set_index(
        ["forget", "method"])
    assert summary.loc[("1", "ssd"), "clean"] == "1/2" and summary.loc[("3", "ssd"), "clean"] == "1/2"
    table = (out / f"{TABLE}.md").read_text()
    assert "matches retraining: Dr-test at most 3 points below the retrained reference's" in table
    header = next(line for line in table.splitlines() if "targets x seeds" in line)
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "method", "targets x seeds", "matches retraining", "under-forgot", "over-forgot", "damaged", "collapsed",
        "ToW", "probe Df %"]
    ssd_counts = next(line for line in table.splitlines() if line.startswith("| ssd ") and "of 4" in line)
    assert [cell.strip() for cell in ssd_counts.strip("|").split("|")][2:] == [
        "2 of 4", "1", "0", "1", "0", "0.600 ± 0.224", "85.0 ± 5.0"]


def test_partial_sweep_lists_missing_runs(baseline_sweep, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(baseline_sweep, sweep)
    (sweep / "1" / "results.json").unlink()  # a killed run: its folder and its claim, no results
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (sweep / "1" / CLAIM_FILE).write_text(json.dumps({"pid": ended.pid, "host": socket.gethostname(),
                                                      "started": "2026-01-01T00:00:00"}))
    shutil.rmtree(sweep / "3")               # a job that never started
    report(sweep, out=tmp_path / "report")
    summary = pd.read_csv(tmp_path / "report" / f"{TABLE}.csv", dtype={"forget": str})
    assert list(summary["runs"]) == [1, 1] and summary["retain_test_acc_std"].isna().all()
    missing = pd.read_csv(tmp_path / "report" / "missing.csv")
    assert len(missing) == 2
    assert missing["where"].tolist() == [str((sweep / "1").resolve()), str(sweep.resolve())]
    assert "no results.json" in missing["reason"][0] and "killed: pid" in missing["reason"][0]
    assert "not started" in missing["reason"][1]
    assert "task.forget=1" in missing["overrides"][0] and "seed=1" in missing["overrides"][0]
    assert "task.forget=3" in missing["overrides"][1] and "seed=1" in missing["overrides"][1]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Missing runs (2)" in text and f"hydra.sweep.dir={sweep.resolve()} resume=true" in text
    assert "2 run(s) without complete results" in capsys.readouterr().out
    (sweep / "1" / CLAIM_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                      "started": "2026-01-01T00:00:00"}))
    assert "still running: pid" in explain(sweep / "1", "no results.json")


def test_no_results_is_a_user_error(baseline_sweep, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "unlearning.report", str(empty)], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "no results.json and no run folders under" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    unfinished = tmp_path / "unfinished"
    shutil.copytree(baseline_sweep / "0", unfinished / "0")
    (unfinished / "0" / "results.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main([str(unfinished)])
    assert exit_info.value.code == 2
    assert not (unfinished / "report").exists()


@pytest.mark.e2e
def test_alpha_lambda_sweep_report(trained_root, tmp_path):
    """A 2 x 2 alpha x lambda SSD sweep over two seeds through the CLI: table, heatmaps, times."""
    sweep = tmp_path / "sweep"
    stand_in_for_seed(trained_root, 1)
    run_cli("unlearn.py", "-m", "method=ssd", "method.alpha=5,50", "method.lambda_=0.5,1", "seed=0,1",
            "method.batch_size=256", *QUIET, f"hydra.sweep.dir={sweep}", root=trained_root, check=True, timeout=1800)
    out = tmp_path / "report"
    report(sweep, out=out)
    summary = pd.read_csv(out / f"{TABLE}.csv", dtype={"forget": str}, keep_default_na=False)
    assert list(summary["method"]) == ["original", "ssd", "ssd", "ssd", "ssd"]
    assert list(summary["setting"]) == ["", "alpha=5, lambda_=0.5", "alpha=5, lambda_=1",
                                        "alpha=50, lambda_=0.5", "alpha=50, lambda_=1"]
    assert (summary["runs"] == 2).all()
    runs = results_of(sweep)
    for _, row in summary.iloc[1:].iterrows():
        alpha, lam = (float(part.split("=")[1]) for part in row["setting"].split(", "))
        mine = [r for r in runs if (r["method_info"]["alpha"], r["method_info"]["lambda"]) == (alpha, lam)]
        values = np.array([r["metrics"]["unlearned"]["forget_test_acc"] for r in mine])
        assert len(mine) == 2 and float(row["forget_test_acc_mean"]) == pytest.approx(values.mean())
        assert float(row["forget_test_acc_std"]) == pytest.approx(values.std(ddof=1), abs=1e-9)
    for name in ("sweep_ssd", "method_time", "per_class_3"):
        assert_png(out / "figures" / f"{TABLE}_{name}.png")
    assert "alpha=50, lambda_=0.5" in (out / f"{TABLE}.md").read_text()


@pytest.mark.slow
def test_optuna_search_runs_trials_and_reports(trained_root, tmp_path):
    """hparams_search=ssd_optuna: a few TPE trials minimise results.json's objective."""
    sweep = tmp_path / "optuna"
    result = run_cli("unlearn.py", "-m", "hparams_search=ssd_optuna", "hydra.sweeper.n_trials=3",
                     "method.batch_size=256", *QUIET, f"hydra.sweep.dir={sweep}", root=trained_root, check=True,
                     timeout=1800)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert 0.1 <= best["best_params"]["method.alpha"] <= 100 and 0.1 <= best["best_params"]["method.lambda_"] <= 5
    runs = results_of(sweep)
    assert len(runs) == 3 and len({r["method_info"]["alpha"] for r in runs}) == 3
    for run in runs:
        assert run["objective"] == pytest.approx(objective(run["metrics"]["original"], run["metrics"]["unlearned"]))
    assert best["best_value"] == pytest.approx(min(r["objective"] for r in runs))
    assert "Best parameters" in result.stdout + result.stderr
    report(sweep, out=tmp_path / "report")
    assert_png(tmp_path / "report" / "figures" / f"{TABLE}_sweep_ssd.png")
    assert not (tmp_path / "report" / "missing.csv").exists()


def test_auto_alpha_runs_and_seed_following_parameters(baseline_sweep, tmp_path):
    """A sweep of method.alpha=10,auto: no crash on the non-numeric alpha, and ``auto.seed: ${seed}``
    (a parameter that only follows the run's seed) is not mistaken for a setting."""
    for result in results_of(baseline_sweep):
        for alpha in (10.0, "auto"):
            folder = tmp_path / "runs" / f"{alpha}-{result['forget_target']}-{result['seed']}"
            folder.mkdir(parents=True)
            method = {"name": "ssd", "alpha": alpha, "lambda_": 1.0, "auto": {"seed": result["seed"]}}
            record = {**result, "method": "ssd", "config": {**result["config"], "method": method}}
            (folder / "results.json").write_text(json.dumps(record))
    out = tmp_path / "report"
    report(tmp_path / "runs", out=out)
    summary = pd.read_csv(out / f"{TABLE}.csv", dtype={"forget": str}, keep_default_na=False)
    assert sorted(set(summary["setting"])) == ["", "alpha=10", "alpha=auto"]
    assert (summary[summary["method"] == "ssd"]["runs"] == 2).all()


def test_a_policy_value_that_follows_the_methods_alpha_is_one_setting():
    """An SSD policy reads the method's alpha (``policy.alpha: ${..alpha}``): the setting is named once,
    while a nested value that differs from its top-level namesake stays a setting of its own."""
    import pandas as pd

    from unlearning.report.collect import settings

    frame = pd.DataFrame({"group": "g", "method": "ssd", "seed": [0, 0, 1],
                          "param.alpha": [10.0, "auto", 10.0], "param.policy.alpha": [10.0, "auto", 10.0],
                          "param.auto.seed": [0, 0, 1], "param.batch_size": [64, 64, 32]})
    assert list(settings(frame)) == ["alpha=10, batch_size=64", "alpha=auto, batch_size=64", "alpha=10, batch_size=32"]
    frame["param.policy.alpha"] = [10.0, "auto", 20.0]
    assert settings(frame)[2] == "alpha=10, policy.alpha=20, batch_size=32"
