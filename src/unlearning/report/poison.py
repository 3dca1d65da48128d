"""The poison and mislabel tables, shaped like Potion's: healed %, accuracy drop and time per method.

A poison request is judged by what the *whole* model does with the trigger (test images with the
trigger pasted on, classified by their true label: "healed"; the share of other classes' triggered
images sent to the attacker's class: "attack success") and by the clean accuracy it cost, not by
Df alone: the unidentified poisons stay in Dr (Potion, Schoepf et al. 2024). A mislabel request by
how many wrong labels the model still answers, on all errors and on the unidentified ones. Rows are
mean ± std over training seeds; "original" is the corrupted model before unlearning and "retrained"
the model retrained on Dr (unidentified corruption included), when the runs compared with one.
"""

from __future__ import annotations

import pandas as pd

from unlearning.evaluation.corruption import MISLABEL_NAMES, POISON_NAMES
from unlearning.report.tables import mean_std, ordered, render

#: The tasks whose runs get this table.
TASKS = ("poison", "mislabel")
#: (column of the runs frame, header, decimals) per task; ``test_drop`` = original test % - test %.
COLUMNS = {
    "poison": (("healed_acc", "healed %", 2), ("attack_success", "attack success %", 2),
               ("test_acc", "test %", 2), ("test_drop", "acc drop", 2),
               ("poison_identified_acc", "identified poisons %", 1),
               ("poison_unidentified_acc", "unidentified poisons %", 1), ("method_time_s", "time s", 2)),
    "mislabel": (("error_acc", "errors kept %", 2), ("error_unidentified_acc", "unidentified kept %", 2),
                 ("error_true_acc", "errors corrected %", 2), ("test_acc", "test %", 2),
                 ("test_drop", "acc drop", 2), ("method_time_s", "time s", 2)),
}
#: What the runs frame must collect from each model's metrics for these tables.
NAMES = (*POISON_NAMES, *MISLABEL_NAMES)


def model_rows(runs: pd.DataFrame, prefix: str, method: str) -> pd.DataFrame:
    """The original (or retrained) model of every (forget, seed) as rows of its own, when the runs carry it."""
    if f"{prefix}test_acc" not in runs:
        return runs.iloc[0:0]
    first = runs[pd.to_numeric(runs[f"{prefix}test_acc"], errors="coerce").notna()].drop_duplicates(["forget", "seed"])
    first = first.copy()
    for column in [c for c in runs.columns if c.startswith(prefix)]:
        first[column[len(prefix):]] = first[column]
    first["method"], first["setting"], first["method_time_s"] = method, "", float("nan")
    return first


def corruption_table(runs: pd.DataFrame) -> str | None:
    """The Markdown table for one report group of poison or mislabel runs; None for other tasks."""
    task = str(runs["task"].iloc[0])
    if task not in TASKS:
        return None
    runs = runs.copy()
    if not (runs["method"] == "baseline").any():
        runs = pd.concat([model_rows(runs, "original_", "original"), runs], ignore_index=True)
    if not (runs["method"] == "retrain").any():
        runs = pd.concat([runs, model_rows(runs, "retrained_", "retrained")], ignore_index=True)
    runs["test_drop"] = pd.to_numeric(runs["original_test_acc"], errors="coerce") - pd.to_numeric(
        runs["test_acc"], errors="coerce")
    columns = [c for c in COLUMNS[task] if c[0] in runs and pd.to_numeric(runs[c[0]], errors="coerce").notna().any()]
    show_setting = bool((runs["setting"].fillna("") != "").any())
    headers = ["forget", "method", *(["setting"] if show_setting else []), "runs", *(h for _, h, _ in columns)]
    lines = []
    for (forget, method, setting), chunk in ordered(runs).groupby(["forget", "method", "setting"], sort=False):
        cells = [str(forget), str(method), *([str(setting)] if show_setting else []), str(len(chunk))]
        for column, _, decimals in columns:
            values = pd.to_numeric(chunk[column], errors="coerce")
            cells.append(mean_std(values.mean(), values.std(ddof=1) if values.count() > 1 else None, decimals))
        lines.append(cells)
    return render(headers, lines, right=len(headers) - len(columns) - 1)


def corruption_section(runs: pd.DataFrame) -> str | None:
    """The table with its caption, for report.md; None when the group is not a poison or mislabel task."""
    table = corruption_table(runs)
    if table is None:
        return None
    if str(runs["task"].iloc[0]) == "poison":
        legend = ("healed: accuracy on the test set with the trigger pasted on, true labels; attack success: % of "
                  "the other classes' triggered test images predicted as the attacker's class; acc drop: clean test "
                  "accuracy lost (points); identified / unidentified poisons: % still predicted as the target")
    else:
        legend = ("errors kept: % of the mislabelled training samples still predicted with their wrong label "
                  "(unidentified: of those left in Dr); errors corrected: % predicted with their true label; "
                  "acc drop: clean test accuracy lost (points)")
    return f"Corrupted-data view (Potion's columns), mean ± std over seeds. {legend}.\n\n{table}\n"
