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
    "mia_strong": "strong MIA",
    "mia_auc": "strong MIA AUC",
    "probe_forget_test_acc": "probe Df-test acc %",
    "probe_forget_member": "probe Df member",
    "healed_acc": "triggered test acc % (healed)",
    "attack_success": "attack success %",
    "poison_acc": "all poisons: target acc %",
    "poison_identified_acc": "identified poisons (Df) %",
    "poison_unidentified_acc": "unidentified poisons %",
    "error_acc": "all errors: wrong-label acc %",
    "error_identified_acc": "identified errors (Df) %",
    "error_unidentified_acc": "unidentified errors %",
    "error_true_acc": "all errors: true-label acc %",
}
#: Percentages that are not accuracies.
PERCENT = ("attack_success",)
#: Figures that exist only for some tasks or settings: shown when present.
OPTIONAL = ("mia_strong", "mia_auc", "probe_forget_test_acc", "probe_forget_member")


def format_metric(value: float, name: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}" if name.endswith("_acc") or name in PERCENT else f"{value:.3f}"


def print_before_after(before: dict, after: dict, names: Sequence[str], method_time: float, eval_time: float,
                       retrained: dict | None = None, relative: dict | None = None) -> None:
    """original | unlearned (| retrained) per metric; with a reference, its Tug-of-War in the caption."""
    table = Table(title="original vs unlearned" + (" vs retrained" if retrained else ""))
    table.add_column("metric")
    table.add_column("original", justify="right")
    table.add_column("unlearned", justify="right")
    if retrained:
        table.add_column("retrained", justify="right")
    shown = [*names, *(name for name in OPTIONAL if name in after and not _missing(after[name]))]
    for name in shown:
        row = [format_metric(before.get(name), name), format_metric(after.get(name), name)]
        if retrained:
            row.append(format_metric(retrained.get(name), name))
        table.add_row(LABELS.get(name, name), *row)
    caption = f"method time {method_time:.2f} s, evaluation time {eval_time:.2f} s"
    if relative:
        caption += (f"; Tug-of-War {relative['tow']:.3f} (original {relative['tow_original']:.3f}; 1 = retrained), "
                    f"JS to retrained on Df {relative['js_forget']:.3f} (original {relative['js_forget_original']:.3f})")
    table.caption = caption
    Console().print(table)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
