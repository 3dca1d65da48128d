"""Tables of the audits' records: U-LiRA (``audit.py``, ``ulira.json``) and the challenge's score (``challenge.json``).

An audit is not an ``unlearn.py`` run: it trains its own shadow or reference models and writes one
record per method and training seed. Its tables are made here, from those files alone, so that the
U-LiRA and challenge numbers README and docs quote are embedded from committed records like every
other table (``<!-- table: NAME ulira -->``, ``<!-- table: NAME challenge -->``;
:mod:`unlearning.report.records`). Rows keep the order in which the records sort by path (the
order the command ran them), one row per dataset, forget set and method, mean ± std over seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unlearning.report.tables import mean_std, render

#: The record each audit kind writes, and the table name it is embedded under.
AUDIT_FILES = {"ulira.json": "ulira", "challenge.json": "challenge"}


def audit_records(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every complete audit record under ``root``, by table name, in path order (reports' own copies skipped)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for filename, table in AUDIT_FILES.items():
        for path in sorted(Path(root).rglob(filename)):
            if "report" in path.relative_to(root).parts:
                continue
            record = json.loads(path.read_text())
            if record.get("status") == "complete":
                found.setdefault(table, []).append(record)
    return found


def grouped(records: list[dict[str, Any]], key: Callable[[dict[str, Any]], tuple]) -> list[list[dict[str, Any]]]:
    """``records`` grouped by ``key``, groups in order of first appearance."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return list(groups.values())


def spread(values: list[float], decimals: int) -> str:
    """Mean ± std (ddof 1, as the report's tables) of ``values``; the mean alone for one value."""
    array = np.asarray(values, dtype=float)
    return mean_std(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None, decimals)


def ulira_table(records: list[dict[str, Any]]) -> str:
    """U-LiRA per method: the attack's AUC after unlearning, and its control (before unlearning) that says
    whether the audit has power (``audit.CONTROL_POWER``)."""
    rows = []
    for group in grouped(records, lambda r: (r["dataset"], r["forget"], r["method"])):
        first = group[0]
        seeds = ", ".join(str(r["seed"]) for r in group)
        rows.append([first["dataset"], first["forget"], first["method"], seeds, str(first["shadows"]),
                     spread([r["auc"] for r in group], 3),
                     spread([r["balanced_accuracy_at_zero"] for r in group], 3),
                     spread([r["control_auc"] for r in group], 3),
                     f"{sum(bool(r['has_power']) for r in group)} of {len(group)}",
                     spread([r["time_s"] for r in group], 0)])
    headers = ["dataset", "forget", "method", "seeds", "shadows", "attack AUC", "balanced acc. (LR > 0)",
               "control AUC", "audit has power", "time s"]
    return render(headers, rows, right=4)


def challenge_table(records: list[dict[str, Any]]) -> str:
    """The unlearning challenge's score per method (N unlearned against N retrained models); the time is per
    model, the method and the challenge's measurement of it together (what ``challenge.json`` records)."""
    rows = []
    for group in grouped(records, lambda r: (r["dataset"], r["n_forget"], r["method"])):
        first = group[0]
        rows.append([first["dataset"], f"{first['n_forget']} {first['task']}", first["method"],
                     ", ".join(str(r["models"]) for r in group),
                     spread([r["final_score"] for r in group], 3),
                     spread([r["forgetting_quality"] for r in group], 3),
                     spread([r["retain_ratio"] for r in group], 3),
                     spread([r["test_ratio"] for r in group], 3),
                     spread([100.0 * r["share_at_cap"] for r in group], 1),
                     spread([float(np.mean(r["method_time_s"])) for r in group], 1),
                     spread([r["time_s"] for r in group], 0)])
    headers = ["dataset", "forget", "method", "models (N)", "final score", "forgetting quality (F)",
               "retain ratio", "test ratio", "Df at the cap %", "unlearn + measure s, per model", "audit s"]
    return render(headers, rows, right=3)


RENDERERS = {"ulira": ulira_table, "challenge": challenge_table}


def audit_tables(root: Path, out: Path | None = None) -> dict[str, str]:
    """The audit tables of the records under ``root`` (by table name), also written to ``out/<name>.md``."""
    tables = {name: RENDERERS[name](records) for name, records in audit_records(root).items()}
    if out is not None and tables:
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            (out / f"{name}.md").write_text(table + "\n")
    return tables
