"""A Markdown table comparing methods from finished runs: mean ± std over seeds.

    python -m unlearning.compare outputs/compare-digits [more folders or results.json files]

Reads every ``results.json`` under the given paths (status "complete"), groups runs by
(dataset, model, task, forgotten target, method) and prints, per method, the mean and
sample standard deviation over seeds of Dr-test and Df-test accuracy, MIA, ZRF and the
method's wall time, plus that time relative to ``retrain`` in the same group. Kept small
and apart on purpose: a general report tool can replace it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Methods in the order the SSD paper's tables use, then the follow-ups; others follow alphabetically.
ORDER = ("baseline", "retrain", "finetune", "badteacher", "amnesiac", "unsir", "scrub", "salun",
         "ssd", "lfssd", "assd", "jit")

COLUMNS = (  # (header, how to read the value from one results.json, decimals)
    ("Dr-test acc %", lambda r: r["metrics"]["unlearned"]["retain_test_acc"], 2),
    ("Df-test acc %", lambda r: r["metrics"]["unlearned"]["forget_test_acc"], 2),
    ("MIA", lambda r: r["metrics"]["unlearned"]["mia"], 3),
    ("ZRF", lambda r: r["metrics"]["unlearned"]["zrf"], 3),
    ("method time s", lambda r: r["method_time_s"], 2),
)


def find_results(paths: Iterable[str | Path]) -> list[dict]:
    """Every complete results.json under ``paths`` (folders are searched recursively)."""
    runs = []
    for path in map(Path, paths):
        files = [path] if path.is_file() else sorted(path.rglob("results.json"))
        for file in files:
            try:
                record = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            if record.get("status") == "complete" and record.get("job", "unlearn") == "unlearn":
                runs.append(record)
    return runs


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(mean: float, std: float, decimals: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _rank(method: str) -> tuple[int, str]:
    return (ORDER.index(method), "") if method in ORDER else (len(ORDER), method)


def table(runs: list[dict], reference: str = "retrain") -> str:
    """One Markdown table per (dataset, model, task, target) group, methods as rows."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        key = (run["dataset"], run["model"], run["task"], run.get("forget", ""))
        groups[key][run["method"]].append(run)
    out = []
    for (dataset, model, task, forget), methods in sorted(groups.items()):
        reference_time = mean_std([r["method_time_s"] for r in methods.get(reference, [])])[0]
        out.append(f"**{dataset} / {model} / {task}: forget {forget}**\n")
        headers = ["method", "seeds", *(name for name, _, _ in COLUMNS), f"time / {reference}"]
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
        for method in sorted(methods, key=_rank):
            records = methods[method]
            cells = [_cell(*mean_std([read(r) for r in records]), decimals) for _, read, decimals in COLUMNS]
            time = mean_std([r["method_time_s"] for r in records])[0]
            relative = "-" if math.isnan(reference_time) or reference_time <= 0 else f"{time / reference_time:.3f}"
            seeds = ",".join(str(s) for s in sorted({r["seed"] for r in records}))
            out.append(f"| {method} | {seeds} | " + " | ".join(cells) + f" | {relative} |")
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearning.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders (searched recursively) or results.json files")
    parser.add_argument("--reference", default="retrain", help="method whose time is 1 in the last column")
    args = parser.parse_args(argv)
    runs = find_results(args.paths)
    if not runs:
        print(f"error: no complete results.json under {', '.join(args.paths)}", file=sys.stderr)
        return 2
    print(table(runs, args.reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
