"""Per-digit table of fixed-alpha vs automatic SSD/LFSSD from the results.json files of a sweep.

    python unlearn.py -m dataset.image_size=null,32 task.forget=0,1,2,3,4,5,6,7,8,9 method=ssd,lfssd \
        method.alpha=10,auto logger=none hydra.sweep.dir=outputs/auto_ssd
    python scripts/auto_ssd_table.py --compact outputs/auto_ssd [more folders ...]

A digit is *clean* when Df-test accuracy <= 5% and Dr-test accuracy fell by at most 3 points
(test data is used here only to report; the automatic mode never reads it). For sub-class and
random forgetting the first column is Df-test / Df-train accuracy / MIA and "clean" keeps the same rule
(it means little there: compare the columns). Prints one
markdown table per (image size, method) and a summary line with clean counts and the
auto runs' work ratio (method times are left out: with the sweep's importance cache they
measure cache hits, not cost; see docs/auto_ssd.md for cold timings); ``--compact`` prints the README's per-digit table instead.
Exit status 0; unreadable files are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

FORGET_MAX = 5.0
RETAIN_DROP_MAX = 3.0


def load(folders: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for folder in folders:
        for path in sorted(folder.rglob("results.json")):
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                print(f"skipped {path}: {error}", file=sys.stderr)
                continue
            if result.get("status") == "complete" and result.get("job", "unlearn") == "unlearn":
                rows.append(result)
    return rows


def mode(result: dict[str, Any]) -> str:
    alpha = result.get("method_info", {}).get("alpha")
    return "auto" if alpha == "auto" else f"alpha {alpha:g}" if isinstance(alpha, int | float) else str(alpha)


def image_size(result: dict[str, Any]) -> str:
    config = result.get("config", {})
    size = config.get("model", {}).get("image_size") or config.get("dataset", {}).get("image_size")
    return f"{size} px" if size else "native px"


def measures(result: dict[str, Any]) -> dict[str, Any]:
    before, after = result["metrics"]["original"], result["metrics"]["unlearned"]
    drop = before["retain_test_acc"] - after["retain_test_acc"]
    info = result.get("method_info", {})
    return {
        "forget": after["forget_test_acc"], "retain": after["retain_test_acc"], "drop": drop,
        "clean": after["forget_test_acc"] <= FORGET_MAX and drop <= RETAIN_DROP_MAX,
        "time": result["method_time_s"], "alpha": info.get("chosen_alpha", info.get("alpha")),
        "scope": info.get("chosen_scope"), "trials": info.get("n_trials"), "steps": info.get("n_steps"),
        "cost": (info.get("work") or {}).get("cost_ratio"),
        "forget_train": after["forget_train_acc"], "mia": after.get("mia"),
        "searched": info.get("searched", True),
    }


def auto_choice(v: dict[str, Any]) -> str:
    """What the automatic mode chose, in one cell."""
    if not v["searched"]:
        return f"not searched: alpha {v['alpha']:g}" if isinstance(v["alpha"], int | float) else "not searched: nothing dampened"
    if not isinstance(v["alpha"], float):
        return f"none, {v['trials']} trials"
    return f"{v['alpha']:.3g}, {v['scope']}, {v['steps']}, {v['trials']}, {v['cost']:.2f}x"


def compact(rows: list[dict[str, Any]]) -> str:
    """One table per (task, image size): per forget target, Df-test / Dr-test for each method and mode,
    and a last row with the clean counts (the README's table)."""
    groups: dict[tuple, dict[str, dict[tuple, dict]]] = defaultdict(lambda: defaultdict(dict))
    for result in rows:
        target = str(result.get("forget_target") or result["forget"])
        groups[(result["task"], image_size(result))][target][(result["method"], mode(result))] = measures(result)
    out = []
    for (task, size), by_target in sorted(groups.items()):
        columns = sorted({c for cells in by_target.values() for c in cells}, key=lambda c: (c[0], c[1] == "auto", c[1]))
        on_train = task == "random"  # random samples have no Df-test: show how Df-train is classified
        first = "Df-train" if on_train else "Df-test"
        note = "" if not on_train else " (random samples: no clean rule; compare with the test accuracy before)"
        out.append(f"\n{task}, {size}: {first} % / Dr-test % (drop); * = clean{note}\n")
        out.append("| forget | " + " | ".join(f"{method.upper()} {m}" for method, m in columns) + " |")
        out.append("|---|" + "---:|" * len(columns))
        clean = defaultdict(int)
        for target in sorted(by_target, key=lambda t: (len(t), t)):
            cells = [target]
            for column in columns:
                v = by_target[target].get(column)
                if v is None:
                    cells.append("-")
                    continue
                clean[column] += v["clean"]
                shown = v["forget_train"] if on_train else v["forget"]
                star = " *" if v["clean"] and not on_train else ""
                cells.append(f"{shown:.1f} / {v['retain']:.1f} ({v['drop']:+.1f}){star}")
            out.append("| " + " | ".join(cells) + " |")
        counts = [f"**{clean[c]}/{sum(c in cells for cells in by_target.values())}**" for c in columns]
        if not on_train:
            out.append("| clean | " + " | ".join(counts) + " |")
    return "\n".join(out)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown tables, one per (image size, method, task), with fixed and auto side by side."""
    groups: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for result in rows:
        key = (image_size(result), result["method"], result["task"])
        groups[key][str(result.get("forget_target") or result["forget"])][mode(result)] = measures(result)
    out = []
    for (size, method, task), by_target in sorted(groups.items()):
        modes = sorted({m for cells in by_target.values() for m in cells}, key=lambda m: (m == "auto", m))
        out.append(f"\n### {method}, {task}, {size}\n")
        header = ["forget"]
        for m in modes:
            first = f"{m}: Df-test %" if task == "fullclass" else f"{m}: Df-test / Df-train % / MIA"
            header += [first, f"{m}: Dr-test % (drop)", f"{m}: clean"]
            if m == "auto":
                header += ["auto: alpha, scope, steps, trials, work"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        clean = defaultdict(int)
        times = defaultdict(list)
        for target in sorted(by_target, key=lambda t: (len(t), t)):
            cells = [target]
            for m in modes:
                v = by_target[target].get(m)
                if v is None:
                    cells += ["-"] * (4 if m == "auto" else 3)
                    continue
                clean[m] += v["clean"]
                times[m].append(v["time"])
                cells += [f"{v['forget']:.1f}" if task == "fullclass" else f"{v['forget']:.1f} / {v['forget_train']:.1f} / {v['mia']:.2f}",
                          f"{v['retain']:.1f} ({v['drop']:+.1f})", "yes" if v["clean"] else "no"]
                if m == "auto":
                    cells.append(auto_choice(v))
            out.append("| " + " | ".join(cells) + " |")
        summary = [f"{m}: {clean[m]}/{len(times[m])} clean" for m in modes if times[m]]
        costs = [c["auto"]["cost"] for c in by_target.values() if "auto" in c and c["auto"]["cost"]]
        if costs:
            summary.append(f"auto run's work (importances + search, in sample-forwards): median "
                           f"{statistics.median(costs):.2f}x, max {max(costs):.2f}x a fixed-alpha run's")
        out.append("\n" + "; ".join(summary) + ".")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep folders holding results.json files")
    parser.add_argument("--compact", action="store_true",
                        help="one table per task and image size with Df-test / Dr-test of every method and mode")
    args = parser.parse_args(argv)
    rows = load(args.folders)
    if not rows:
        print(f"no complete results.json under {', '.join(map(str, args.folders))}", file=sys.stderr)
        return 1
    print(compact(rows) if args.compact else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
