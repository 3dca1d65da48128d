"""Find every run under the given folders: complete results, and the runs that are missing.

A run is a folder that holds a ``results.json`` (unlearn.py writes it last, atomically; it is
read through :class:`unlearning.record.RunRecord`, the class that writes it) or a
Hydra ``.hydra/`` record. A run whose ``results.json`` is absent, unreadable or not
``complete`` is *missing*: the report lists it (with the error its log ends on) instead of
failing, so that a partial sweep can be read while it runs or after some jobs failed. For a
Hydra multirun folder (``multirun.yaml``) made by the basic sweeper, the jobs the sweep
would launch are recomputed from its overrides, so jobs that never started are listed too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from unlearning.errors import UserError
from unlearning.evaluation.verdict import judge, reference_verdict
from unlearning.record import RESULTS_FILE, RunRecord

METRICS = ("retain_train_acc", "forget_train_acc", "retain_test_acc", "forget_test_acc", "test_acc", "mia", "zrf")
#: The gold-standard figures (evaluation.strong_mia / probe), present in newer records.
#: Poison / mislabel figures (unlearning.evaluation.corruption), read by the corrupted-data table.
CORRUPTION_METRICS = ("healed_acc", "attack_success", "poison_acc", "poison_identified_acc", "poison_unidentified_acc",
                      "error_acc", "error_identified_acc", "error_unidentified_acc", "error_true_acc")
CORRUPTION_TASKS = ("poison", "mislabel")
GOLD_METRICS = ("mia_strong", "mia_auc", "probe_forget_test_acc", "probe_forget_member", "probe_member_auc")
#: Figures relative to the retrained reference (evaluation.reference=retrain); ``*_original`` ones are the
#: original model's value and land in ``original_<name>``.
RELATIVE_METRICS = ("tow", "js_forget", "js_test", "delta_retain_test_acc", "delta_forget_test_acc",
                    "delta_forget_train_acc", "delta_test_acc", "gap_mia_auc")
#: Method config keys that are not hyperparameters.
NOT_PARAMS = ("_target_", "name")


@dataclass(frozen=True)
class Missing:
    """A run without complete results: where it is (or would be), its overrides, and why."""

    where: Path
    overrides: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class CompleteRun:
    """A finished run: its record and the folder it was read from."""

    record: RunRecord
    run_dir: Path


@dataclass
class Collection:
    """Complete runs (their records and folders) and missing ones."""

    runs: list[CompleteRun] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return runs_frame(self.runs)


def natural_key(path: Path) -> list:
    """Sort ``…/9`` before ``…/10`` (Hydra numbers the jobs of a sweep)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def collect(paths: Sequence[str | Path]) -> Collection:
    """Every complete run and every missing run under ``paths`` (folders or results.json files)."""
    roots = [Path(p).expanduser() for p in paths]
    for root in roots:
        if not root.exists():
            raise UserError(f"{root} does not exist. Give the folder of a run or a multirun "
                            "(e.g. outputs/multirun/unlearn/<experiment>/<time>) or a results.json file.")
    run_dirs: set[Path] = set()
    sweeps: set[Path] = set()
    for root in roots:
        if root.is_file():
            run_dirs.add(root.resolve().parent)
            continue
        run_dirs.update(p.parent.resolve() for p in root.rglob(RESULTS_FILE))
        run_dirs.update(p.parent.resolve() for p in root.rglob(".hydra") if (p / "config.yaml").is_file())
        sweeps.update(p.parent.resolve() for p in root.rglob("multirun.yaml"))
    collection = Collection()
    found_overrides: dict[Path, set[frozenset[str]]] = {sweep: set() for sweep in sweeps}
    for run_dir in sorted(run_dirs, key=natural_key):
        overrides = read_overrides(run_dir)
        for sweep in sweeps:
            if sweep in run_dir.parents:
                found_overrides[sweep].add(frozenset(overrides))
        record, problem = read_results(run_dir / RESULTS_FILE)
        if record is not None:
            collection.runs.append(CompleteRun(record, run_dir))
        elif job_of(run_dir) in (None, "unlearn"):  # train.py's runs are not unlearning runs
            collection.missing.append(Missing(run_dir, tuple(overrides), explain(run_dir, problem)))
    for sweep in sorted(sweeps, key=natural_key):
        for job in expected_jobs(sweep) or []:
            if frozenset(job) not in found_overrides[sweep]:
                collection.missing.append(Missing(sweep, tuple(job), "not started (no run folder yet)"))
    return collection


def read_results(path: Path) -> tuple[RunRecord | None, str]:
    """(record, "") for a complete results.json, else (None, what is wrong with it)."""
    if not path.is_file():
        return None, "no results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return None, f"unreadable results.json ({error})"
    record = RunRecord.from_json(data) if isinstance(data, dict) else None
    if record is None or not record.complete:
        return None, f"results.json has status {record.status if record else None!r}, not 'complete'"
    return record, ""


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_overrides(run_dir: Path) -> list[str]:
    overrides = read_yaml(run_dir / ".hydra" / "overrides.yaml")
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def job_of(run_dir: Path) -> str | None:
    config = read_yaml(run_dir / ".hydra" / "config.yaml")
    return config.get("job") if isinstance(config, dict) else None


def explain(run_dir: Path, problem: str) -> str:
    """``problem``, plus what the run folder says about the run: still running, killed or failed.

    unlearn.py holds its folder with a claim file (``unlearning.runs``) while it runs and
    removes it when it ends: a claim whose process is alive is a running run, a claim whose
    process is gone is a killed one. The last error line of the Hydra job log says why a run failed.
    """
    errors = [line.strip() for log in sorted(run_dir.glob("*.log")) for line in read_lines(log)
              if "ERROR" in line or "Error" in line]
    state = claim_state(run_dir)
    if errors:
        return f"{problem}; {state + '; ' if state else ''}log: {errors[-1][:200]}"
    return f"{problem} ({state or 'failed, killed or not started'})"


def claim_state(run_dir: Path) -> str:
    """'running (pid N ...)', 'killed (...)' from the run's claim file, or '' without one."""
    import os
    import socket

    from unlearning.runs import CLAIM_FILE

    try:
        claim = json.loads((run_dir / CLAIM_FILE).read_text())
        pid, host, started = int(claim["pid"]), str(claim["host"]), claim.get("started", "?")
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if host != socket.gethostname():
        return f"claimed by pid {pid} on {host} since {started}: running there, or killed"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"killed: pid {pid}, started {started}, ended without finishing"
    except PermissionError:
        pass
    return f"still running: pid {pid}, started {started}"


def read_lines(path: Path) -> Iterable[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The override lists of every job a basic-sweeper multirun launches (None if unknown).

    Recomputed the way Hydra's BasicSweeper does it: ``hydra.sweeper.params`` followed by the
    command-line overrides, later keys replacing earlier ones, then the cartesian product.
    Other sweepers (Optuna) choose their jobs as they go, so nothing is expected of them.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    config = read_yaml(sweep_dir / "multirun.yaml")
    try:
        sweeper = config["hydra"]["sweeper"]
        arguments = list(config["hydra"]["overrides"]["task"] or [])
    except (KeyError, TypeError):
        return None
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    try:
        parsed = OverridesParser.create().parse_overrides([*params, *arguments])
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # an override this version cannot parse: do not guess
        return None
    return [list(job) for batch in batches for job in batch]


# ---------------------------------------------------------------------------- frame
def forget_label(record: RunRecord) -> str:
    """What was forgotten, as the table shows it (the random subset's seed is a seed, not a row)."""
    if record.task == "random":
        return f"{record.n_forget} random"
    return str(record.forget_target or record.forget)


def method_params(record: RunRecord) -> dict[str, Any]:
    """The method's hyperparameters from the recorded config, flattened (``noise_steps.fullclass``)."""
    method = ((record.config or {}).get("method") or {})
    params = {k: v for k, v in method.items() if k not in NOT_PARAMS}
    # pandas flattens nested keys with "." (top-level values first); records give back plain Python values
    return pd.json_normalize(params).to_dict(orient="records")[0]


def group_name(record: RunRecord) -> str:
    """The table a run belongs to: ``<experiment>-<model>``, or ``<dataset>-<labels>-<task>-<model>``
    for runs launched without ``experiment=``."""
    experiment = record.experiment
    if not experiment:
        experiment = f"{record.dataset}-{record.label_kind}-{record.task}"
    return f"{experiment}-{record.model}"


def runs_frame(runs: list[CompleteRun]) -> pd.DataFrame:
    """One row per complete run: identity, unlearned metrics, ``original_*`` metrics, ``param.*``."""
    rows = []
    for order, run in enumerate(runs):
        record = run.record
        metrics = record.metrics or {}
        row = {
            "order": order,
            "group": group_name(record),
            "experiment": record.experiment,
            "dataset": record.dataset,
            "label_kind": record.label_kind,
            "model": record.model,
            "task": record.task,
            "method": record.method,
            "forget": forget_label(record),
            "seed": record.seed,
            "n_forget": record.n_forget,
            "objective": record.objective,
            "method_time_s": record.method_time_s,
            "evaluation_time_s": record.evaluation_time_s,
            "run_dir": str(run.run_dir),
        }
        for name in (*METRICS, *GOLD_METRICS, *CORRUPTION_METRICS):
            row[name] = (metrics.get("unlearned") or {}).get(name)
            row[f"original_{name}"] = (metrics.get("original") or {}).get(name)
            row[f"retrained_{name}"] = (metrics.get("retrained") or {}).get(name)
        relative = metrics.get("relative") or {}
        for name in RELATIVE_METRICS:
            row[name] = relative.get(name)
        row["original_tow"], row["original_js_forget"] = relative.get("tow_original"), relative.get("js_forget_original")
        row["original_js_test"] = relative.get("js_test_original")
        # the clean / collapsed verdicts judge a forgotten class; poison and mislabel runs have their own table
        row["verdict"] = None if record.task in CORRUPTION_TASKS else run_verdict(metrics)
        # which rule gave it: "damaged" and "collapsed" are words of both, so the words cannot tell
        row["verdict_against_reference"] = row["verdict"] is not None and reference_verdict(
            metrics.get("unlearned") or {}, metrics.get("retrained") or {}) is not None
        row["source_seed"] = record.source_seed
        row.update({f"param.{k}": v for k, v in method_params(record).items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["setting"] = settings(frame)
    return frame


def run_verdict(metrics: dict[str, Any]) -> str | None:
    """The run's verdict (:mod:`unlearning.evaluation.verdict`): against its retrained reference when it
    has one (every task), else the fixed full-class rule; None when unknown."""
    before, after = metrics.get("original") or {}, metrics.get("unlearned") or {}
    if "retain_test_acc" not in before or "retain_test_acc" not in after:
        return None
    return judge(before, after, metrics.get("retrained"))


def settings(frame: pd.DataFrame) -> pd.Series:
    """Per run, the method hyperparameters that vary among that method's runs in its table."""
    params = [c for c in frame.columns if c.startswith("param.")]
    setting = pd.Series("", index=frame.index, dtype=object)
    for _, runs in frame.groupby(["group", "method"], sort=False):
        # a parameter that only follows the run's seed (auto.seed: ${seed}) is the seed, not a setting
        varying = [c for c in params if runs[c].map(comparable).nunique() > 1
                   and not runs[c].map(comparable).equals(runs["seed"].map(comparable))]
        # a nested value that always equals the top-level one of its name is that setting, read by a
        # part of the method (an SSD policy's alpha is ${..alpha}): shown once
        varying = [c for c in varying if not mirrors_top_level(runs, c, varying)]
        for index, run in runs.iterrows():
            setting[index] = ", ".join(f"{c[len('param.'):]}={fmt_value(run[c])}" for c in varying)
    return setting


def mirrors_top_level(runs: pd.DataFrame, column: str, columns: list[str]) -> bool:
    """Whether ``param.a.b`` equals ``param.b`` (also varying) in every run."""
    leaf = "param." + column.rsplit(".", 1)[-1]
    return column.count(".") > 1 and leaf in columns and leaf != column and runs[column].map(comparable).equals(
        runs[leaf].map(comparable))


def comparable(value: Any) -> str:
    """A hashable form in which 1 and 1.0 (a sweep's ``alpha=1`` and a default 1.0) are equal."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    return repr(value)


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------- re-launching
def sweep_of(path: Path) -> Path | None:
    """The multirun folder that ``path`` is (or lies in), if any."""
    for folder in (path, *path.parents):
        if (folder / "multirun.yaml").is_file():
            return folder
    return None


def relaunch_command(sweep_dir: Path) -> str | None:
    """The command that fills in a partial basic sweep: the same overrides, same folder, resume=true.

    Job numbers follow the overrides, so each job lands in its old folder, and ``resume=true``
    skips those whose results.json is complete.
    """
    import shlex

    config = read_yaml(sweep_dir / "multirun.yaml")
    try:
        arguments = [str(a) for a in config["hydra"]["overrides"]["task"] or [] if not str(a).startswith("resume=")]
    except (KeyError, TypeError):
        return None
    return shlex.join(["python", "unlearn.py", "-m", *arguments, f"hydra.sweep.dir={sweep_dir}", "resume=true"])
