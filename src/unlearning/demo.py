"""``make demo`` / ``python -m unlearning.demo [OVERRIDES]``: the paper's SSD and the hands-free mode side by side.

Runs one two-run sweep through the real entry point (``unlearn.py -m method.alpha=10,auto
evaluation.reference=retrain``, training the source model and the retrained reference first
when they are missing), then prints one table with the original model, SSD at the paper's
alpha, ``method.alpha=auto`` and the model retrained without the class (the gold standard),
one sentence per method saying what happened (the rule of :mod:`unlearning.evaluation.verdict`)
and one saying what the features still know (the probe, docs/evaluation.md). Any Hydra
override is passed on, e.g. ``python -m unlearning.demo method=lfssd task.forget=5 seed=1``;
``python -m unlearning.demo --show SWEEP_DIR`` prints a finished demo sweep again (README's
output is ``--show results/demo/runs``, checked by ``make tables``' test).

The default forget request (digit 3, ``dataset.default_forget``) was fixed before any
result of the current recipe was seen and is not chosen by outcome.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from unlearning.evaluation.verdict import judge
from unlearning.jobs.report_table import LABELS, format_metric

ROOT = Path(__file__).resolve().parents[2]
#: The paper's alpha for ResNet18, then the hands-free search.
MODES = (("10", "SSD, alpha 10 (paper)"), ("auto", "SSD, alpha=auto"))
ROWS = ("forget_test_acc", "retain_test_acc", "test_acc", "forget_train_acc", "mia", "mia_auc",
        "probe_forget_test_acc")
WHAT = {
    "clean": "forgot the class and kept the rest (clean)",
    "not forgotten": "did not forget the class",
    "damaged": "lost more than 3 points on the retained classes",
    "collapsed": "destroyed the model (the retained classes are lost too)",
    "matches retraining": "matches the retrained model on Df and on the retained classes",
    "under-forgot": "kept more of the class than the retrained model",
    "over-forgot": "erased more than the retrained model does",
}


def sweep_folder(overrides: list[str]) -> tuple[Path, list[str]]:
    """``hydra.sweep.dir=`` when given (taken out of the overrides), else ``outputs/demo/<time>``
    under ``UNLEARNING_ROOT`` (default: the current directory, like every other path)."""
    given = [o for o in overrides if o.startswith("hydra.sweep.dir=")]
    if given:
        return Path(given[-1].split("=", 1)[1]), [o for o in overrides if o not in given]
    root = Path(os.environ.get("UNLEARNING_ROOT", "."))
    return root / "outputs" / "demo" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"), overrides


def sweep_command(sweep_dir: Path, overrides: Sequence[str]) -> list[str]:
    script = ROOT / "unlearn.py"
    if not script.is_file():
        raise SystemExit(f"error: {script} not found: run the demo from a checkout of the repository (make demo).")
    alphas = ",".join(alpha for alpha, _ in MODES)
    return [sys.executable, str(script), "-m", f"method.alpha={alphas}", "evaluation.reference=retrain",
            f"hydra.sweep.dir={sweep_dir}", "logger=none", *overrides]


def read_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for index in range(len(MODES)):
        path = sweep_dir / str(index) / "results.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing: the sweep did not finish (see its log above).")
        runs.append(json.loads(path.read_text()))
    return runs


def method_label(results: dict[str, Any], fallback: str) -> str:
    name, info = results["method"].upper(), results["method_info"]
    alpha = info.get("alpha")
    if alpha == "auto":
        chosen = info.get("chosen_alpha")
        return f"{name}, alpha=auto" + (f" (chose {chosen:.3g})" if isinstance(chosen, int | float) else "")
    return f"{name}, alpha {alpha:g}" if isinstance(alpha, int | float) else fallback


def sentence(results: dict[str, Any], label: str) -> str:
    metrics = results["metrics"]
    before, after, reference = metrics["original"], metrics["unlearned"], metrics.get("retrained")
    outcome = judge(before, after, reference)
    if outcome is None:
        return (f"{label}: Df-train {before['forget_train_acc']:.1f} % -> {after['forget_train_acc']:.1f} %, "
                f"test {before['test_acc']:.1f} % -> {after['test_acc']:.1f} % (random samples: compare the two).")
    forget = "forget_test_acc" if isinstance(after.get("forget_test_acc"), int | float) and \
        not math.isnan(after["forget_test_acc"]) else "forget_train_acc"
    split = "Df-test" if forget == "forget_test_acc" else "Df-train"
    text = (f"{label} took {split} from {before[forget]:.1f} % to {after[forget]:.1f} % and "
            f"Dr-test from {before['retain_test_acc']:.1f} % to {after['retain_test_acc']:.1f} %")
    if reference and forget in reference:
        text += f" (retrained: {reference[forget]:.1f} % and {reference['retain_test_acc']:.1f} %)"
    return f"{text}: it {WHAT[outcome]}."


def probe_sentence(runs: list[dict[str, Any]], labels: list[str]) -> str:
    """What a 10-shot linear probe finds in each model's features, against the original and the reference."""
    original = runs[0]["metrics"]["original"]["probe_forget_test_acc"]
    reference = runs[0]["metrics"]["retrained"]["probe_forget_test_acc"]
    found = ", ".join(f"{label} {r['metrics']['unlearned']['probe_forget_test_acc']:.0f} %"
                      for r, label in zip(runs, labels, strict=True))
    return (f"A linear probe fitted on the features with 10 labelled examples of the class finds it in "
            f"{original:.0f} % of its test images in the original model, {reference:.0f} % in the retrained one, "
            f"and {found}: near the original means the features still know the class.")


def print_side_by_side(runs: list[dict[str, Any]], console: Console) -> None:
    first = runs[0]
    labels = [method_label(r, title) for r, (_, title) in zip(runs, MODES, strict=True)]
    table = Table(title=f"Forgetting {first['forget']} of {first['dataset']} "
                        f"({first['model']}, training seed {first.get('source_seed', first['seed'])})")
    retrained = first["metrics"].get("retrained")
    table.add_column("metric")
    table.add_column("original", justify="right")
    for label in labels:
        table.add_column(label, justify="right")
    if retrained:
        table.add_column("retrained without it", justify="right")
    for name in ROWS:
        if name not in first["metrics"]["unlearned"]:
            continue
        table.add_row(LABELS.get(name, name), format_metric(first["metrics"]["original"][name], name),
                      *(format_metric(r["metrics"]["unlearned"][name], name) for r in runs),
                      *([format_metric(retrained.get(name), name)] if retrained else []))
    if retrained:
        table.add_row("Tug-of-War (1 = retrained)", f"{first['metrics']['relative']['tow_original']:.3f}",
                      *(f"{r['metrics']['relative']['tow']:.3f}" for r in runs), "1.000")
    table.add_row("method time s", "", *(f"{r['method_time_s']:.1f}" for r in runs),
                  *([""] if retrained else []))
    console.print(table)
    for results, label in zip(runs, labels, strict=True):
        console.print(sentence(results, label))
    if retrained and "probe_forget_test_acc" in retrained:
        console.print(probe_sentence(runs, labels))
    rule = ("Verdicts against the retrained model: Df within 5 points of it, Dr-test at most 3 below it"
            if retrained else "Clean = Df-test <= 5 % and Dr-test down by at most 3 points")
    console.print(f"{rule}; test images are used only to report, never by the methods.")


#: Width of the demo's output as README shows it (a terminal of this many columns prints the same).
README_WIDTH = 118


def rendered(sweep_dir: Path, width: int = README_WIDTH) -> str:
    """The demo's side-by-side output for the finished sweep ``sweep_dir`` as plain text, ``width`` columns.

    README's demo output is this, made from the committed records of a real ``make demo``
    (``results/demo``), so that it cannot drift from what the demo prints for them.
    """
    import io

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, force_terminal=False)
    print_side_by_side(read_runs(sweep_dir), console)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--show"]:  # print a finished demo sweep again, e.g. the committed records in results/demo/runs
        if len(argv) != 2 or not Path(argv[1]).is_dir():
            raise SystemExit("usage: python -m unlearning.demo --show SWEEP_DIR (a finished demo sweep)")
        print(rendered(Path(argv[1])), end="")
        return 0
    sweep_dir, overrides = sweep_folder(argv)
    command = sweep_command(sweep_dir, overrides)
    print("Running:", " ".join(command[1:]), flush=True)
    finished = subprocess.run(command)
    if finished.returncode != 0:
        return finished.returncode
    console = Console()
    console.print()
    print_side_by_side(read_runs(sweep_dir), console)
    console.print(f"Results: {sweep_dir}/*/results.json; tables over several seeds: python -m unlearning.report "
                  f"{sweep_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
