"""The before/after table printed at the end of an unlearning run."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

LABELS = {
    "retain_train_acc": "Dr-train acc %",
    "forget_train_acc": "Df-train acc %",
    "retain_test_acc": "Dr-test acc %",
    "forget_test_acc": "Df-test acc %",
    "test_acc": "test acc %",
    "mia": "MIA",
    "zrf": "ZRF",
}


def format_metric(value: float, name: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}" if name.endswith("_acc") else f"{value:.3f}"


def print_before_after(before: dict, after: dict, names: Sequence[str], method_time: float, eval_time: float) -> None:
    table = Table(title="original vs unlearned")
    table.add_column("metric")
    table.add_column("original", justify="right")
    table.add_column("unlearned", justify="right")
    for name in names:
        table.add_row(LABELS.get(name, name), format_metric(before[name], name), format_metric(after[name], name))
    table.caption = f"method time {method_time:.2f} s, evaluation time {eval_time:.2f} s"
    Console().print(table)
