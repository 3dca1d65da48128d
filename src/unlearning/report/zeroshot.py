"""The zero-shot comparison, shaped like the JiT paper's table: Dr-test, Df-test, MIA and time per
method, with a column saying which training data each method needs.

Zero-shot methods (JiT, GKT, EMMN) never read the retained data Dr; the others in the same table
(retrain, SSD, amnesiac, ...) do, which is what their numbers cost. The column comes from the
method class's ``data_needed`` (:class:`~unlearning.methods.base.UnlearningMethod`), found
through the ``_target_`` of each run's recorded config, so a new method declares it in one place.
The report adds this table to a group that holds at least one zero-shot run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from unlearning.report.tables import mean_std, render, summarise

#: The column's header and what each value means (docs/zeroshot.md).
DATA_HEADER = "data needed"
DATA_MEANINGS = {
    "none": "nothing (the model as it is)",
    "class only": "no training sample, only which class to forget",
    "Df only": "the forget set Df, never Dr",
    "Dr only": "the retained data Dr (retraining)",
    "Df + Dr": "Df and the retained data (or all of D)",
}
ZERO_SHOT = ("class only", "Df only")
#: (column in the summary, header, decimals): the paper's columns, then the gold standard's headline.
COLUMNS = (
    ("retain_test_acc", "Dr-test %", 2),
    ("forget_test_acc", "Df-test %", 2),
    ("mia", "MIA %", 2),
    ("tow", "ToW", 3),
    ("method_time_s", "time s", 2),
)
#: Rows the report adds itself: the model before unlearning and the retrained reference.
SYNTHETIC = {"original": "–", "retrained": "Dr only"}


def data_needed_of(target: str | None) -> str:
    """The ``data_needed`` of the method class named by ``target``; "?" when it cannot be imported."""
    if not target:
        return "?"
    from hydra.utils import get_class

    try:
        return str(get_class(target).data_needed)
    except Exception:  # a method removed since the run, or a record from elsewhere: say we do not know
        return "?"


def data_needed(records: Sequence) -> dict[str, str]:
    """``{method name: data needed}`` over run records (their configs' ``method._target_``)."""
    needs: dict[str, str] = {}
    for record in records:
        method = ((record.config or {}).get("method") or {})
        if record.method and record.method not in needs:
            needs[record.method] = data_needed_of(method.get("_target_"))
    return needs


def zero_shot_table(runs: pd.DataFrame, needs: Mapping[str, str]) -> str | None:
    """The Markdown table for one report group; None when no run of the group is zero-shot."""
    if not any(needs.get(m) in ZERO_SHOT for m in runs["method"].unique()):
        return None
    summary = summarise(runs)
    columns = [c for c in COLUMNS if f"{c[0]}_mean" in summary and summary[f"{c[0]}_mean"].notna().any()]
    show_setting = bool((summary["setting"] != "").any())
    headers = ["forget", "method", *(["setting"] if show_setting else []), DATA_HEADER, "runs",
               *(header for _, header, _ in columns)]
    lines = []
    for _, row in summary.iterrows():
        need = SYNTHETIC.get(row["method"]) or needs.get(row["method"], "?")
        lines.append([str(row["forget"]), str(row["method"]), *([str(row["setting"])] if show_setting else []),
                      need, str(row["runs"]),
                      *(mean_std(row[f"{c}_mean"], row[f"{c}_std"], d) for c, _, d in columns)])
    return render(headers, lines, right=len(headers) - len(columns) - 1)


def zero_shot_section(runs: pd.DataFrame, records: Sequence) -> str | None:
    """The table with its caption, for report.md; None when the group has no zero-shot run."""
    table = zero_shot_table(runs, data_needed(records))
    if table is None:
        return None
    legend = "; ".join(f"{key}: {meaning}" for key, meaning in DATA_MEANINGS.items())
    return (f"Zero-shot comparison (the JiT paper's columns; zero-shot = never reads Dr). {DATA_HEADER}: "
            f"{legend}.\n\n{table}\n")
