"""Tables like the SSD paper's: rows method x forget target, mean ± std over seeds.

Columns: Dr-test accuracy, Df-test accuracy (Df-train for random forgetting, which has no
Df-test), membership inference (% of Df the attack calls members), ZRF and the method's own
wall time (evaluation excluded), and, where the table has ``retrain`` runs, that time
relative to retraining the same forget target (the gold standard every method must beat on
cost). When a table has no ``baseline`` runs, an ``original`` row per forget target shows the
model before unlearning, so every table has its reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from unlearning.evaluation.verdict import (
    COLLAPSE_DROP,
    FORGET_MAX,
    FORGET_TOLERANCE,
    REFERENCE_VERDICTS,
    RETAIN_DROP_MAX,
    SUCCESS,
    VERDICTS,
    verdict,
)

#: Rows that are not unlearning methods but what they are compared with: first, in this order; the
#: methods follow in the order they were run (the order the sweep's command names them).
REFERENCE_ROWS = ("original", "baseline", "retrained", "retrain")
#: (column in the runs frame, header, scale, decimals)
COLUMNS = (
    ("retain_test_acc", "Dr-test %", 1.0, 2),
    ("forget_test_acc", "Df-test %", 1.0, 2),
    ("mia", "MIA %", 100.0, 2),
    ("zrf", "ZRF", 1.0, 3),
    ("method_time_s", "time s", 1.0, 3),
)
#: Shown when the runs carry them: the gold-standard figures (docs/evaluation.md).
GOLD_COLUMNS = (
    ("tow", "ToW", 1.0, 3),
    ("delta_retain_test_acc", "Δ Dr-test", 1.0, 2),
    ("js_forget", "JS Df", 1.0, 3),
    ("mia_auc", "MIA AUC", 1.0, 3),
    ("probe_forget_test_acc", "probe Df %", 1.0, 1),
    ("probe_member_auc", "probe AUC", 1.0, 3),
)
#: The gold-standard figures the outcome counts add, as mean ± std over every request (the per-target
#: table has them per target): how close to the retrained model by outputs, and what the features keep.
COUNT_GOLD_COLUMNS = tuple(c for c in GOLD_COLUMNS if c[0] in ("tow", "probe_forget_test_acc"))
KEYS = ["forget", "method", "setting"]
#: The relative-time column: mean method time over mean ``retrain`` time of the same forget target.
RELATIVE_TIME = ("time_vs_retrain", "time / retrain", 3)


def columns_for(runs: pd.DataFrame) -> list[tuple[str, str, float, int]]:
    """The table's columns; random forgetting shows Df-train accuracy in place of Df-test.

    The gold-standard columns follow where some run has them (ToW, Δ and JS need
    ``evaluation.reference=retrain``; the attack's AUC and the probe are on by default).
    """
    columns = list(COLUMNS)
    if runs["forget_test_acc"].isna().all():
        columns = [("forget_train_acc", "Df-train %", 1.0, 2) if c[0] == "forget_test_acc" else c for c in columns]
    gold = [c for c in GOLD_COLUMNS if c[0] in runs and pd.to_numeric(runs[c[0]], errors="coerce").notna().any()]
    return columns[:-1] + gold + columns[-1:]


def original_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The model before unlearning, once per (forget target, seed), as method ``original``."""
    first = runs.drop_duplicates(["forget", "seed"]).copy()
    for column in [c for c in runs.columns if c.startswith("original_")]:
        first[column[len("original_"):]] = first[column]
    first["method"], first["setting"], first["method_time_s"] = "original", "", np.nan
    # figures against the reference: the original's own (from its and the reference's accuracies), never the run's
    for column in [c for c in runs.columns if c.startswith("delta_") or c == "gap_mia_auc"]:
        key = column[len("delta_"):]
        if column.startswith("delta_") and f"original_{key}" in runs and f"retrained_{key}" in runs:
            first[column] = (pd.to_numeric(first[f"original_{key}"], errors="coerce")
                             - pd.to_numeric(first[f"retrained_{key}"], errors="coerce"))
        elif f"original_{column}" not in runs:
            first[column] = np.nan
    if "verdict" in first:
        first["verdict"] = None  # the model before unlearning forgot nothing: no verdict
    return first


def reference_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The retrained reference, once per (forget target, seed), as method ``retrained``.

    Shown when the runs compared with one (``evaluation.reference=retrain``) and the table has
    no ``retrain`` runs of its own: the gold standard every column is read against.
    """
    if "retrained_retain_test_acc" not in runs:
        return runs.iloc[0:0]
    first = runs[runs["retrained_retain_test_acc"].notna()].drop_duplicates(["forget", "seed"]).copy()
    for column in [c for c in runs.columns if c.startswith("retrained_")]:
        first[column[len("retrained_"):]] = first[column]
    first["method"], first["setting"], first["method_time_s"], first["verdict"] = "retrained", "", np.nan, None
    first["tow"], first["js_forget"], first["js_test"] = 1.0, 0.0, 0.0
    for column in [c for c in runs.columns if c.startswith(("delta_", "gap_"))]:
        first[column] = 0.0
    return first


def ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows: forget targets as swept, then the reference rows, then methods and settings as run."""
    first_seen = {key: runs.groupby(key, sort=False)["order"].min() for key in ("forget", "method", "setting")}
    rank = {m: i for i, m in enumerate(REFERENCE_ROWS)}
    method_rank = runs["method"].map(lambda m: rank.get(m, len(rank) + int(first_seen["method"][m])))
    return runs.assign(
        _forget=runs["forget"].map(first_seen["forget"]), _method=method_rank,
        _setting=runs["setting"].map(first_seen["setting"]),
    ).sort_values(["_forget", "_method", "_setting", "order"], kind="stable")


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (forget, method, setting): ``runs`` (seeds) and ``<column>_mean``/``_std``."""
    if not (runs["method"] == "baseline").any():
        runs = pd.concat([original_rows(runs), runs], ignore_index=True)
    if not (runs["method"] == "retrain").any():
        runs = pd.concat([runs, reference_rows(runs)], ignore_index=True)
    runs = ordered(runs)
    columns = columns_for(runs)
    rows = []
    for key, chunk in runs.groupby(KEYS, sort=False):
        row = dict(zip(KEYS, key, strict=True))
        row["runs"] = len(chunk)
        row["seeds"] = " ".join(str(s) for s in sorted(chunk["seed"].dropna().astype(int).unique()))
        for column, _, scale, _ in columns:
            values = pd.to_numeric(chunk[column], errors="coerce") * scale
            row[f"{column}_mean"] = values.mean()
            row[f"{column}_std"] = values.std(ddof=1) if values.count() > 1 else np.nan
        row["clean"] = clean_count(chunk)
        rows.append(row)
    summary = pd.DataFrame(rows)
    retrain = summary[summary["method"] == "retrain"].groupby("forget")["method_time_s_mean"].mean()
    summary[RELATIVE_TIME[0]] = summary["method_time_s_mean"] / summary["forget"].map(retrain)
    return summary


def clean_count(runs: pd.DataFrame) -> str:
    """``k/n``: how many of the runs are clean, or match retraining where judged against the reference
    (:mod:`unlearning.evaluation.verdict`); "" without verdicts."""
    verdicts = runs["verdict"].dropna() if "verdict" in runs else pd.Series(dtype=object)
    return f"{int(verdicts.isin(SUCCESS).sum())}/{len(verdicts)}" if len(verdicts) else ""


def against_reference(runs: pd.DataFrame) -> bool:
    """Whether the runs' verdicts were given against the retrained reference (its vocabulary)."""
    return bool(runs["verdict_against_reference"].fillna(False).astype(bool).any()) \
        if "verdict_against_reference" in runs else False


def success_header(runs: pd.DataFrame) -> str:
    return "matches retraining" if against_reference(runs) else "clean"


def verdict_counts(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Per (method, setting): clean requests of n over every forget target and seed, and what the rest were.

    The headline form of a per-class table: one request is one (forget target, seed) run.
    None when no run has a verdict (random forgetting, or records without test accuracies).
    """
    judged = runs[runs["verdict"].notna()] if "verdict" in runs else runs.iloc[0:0]
    judged = judged[judged["method"] != "baseline"]
    if judged.empty:
        return None
    # against the reference, the retrained model matches itself by definition: no row of its own
    retrained = (reference_rows(judged) if not (judged["method"] == "retrain").any() and not against_reference(judged)
                 else judged.iloc[0:0])
    if not retrained.empty and "original_retain_test_acc" in retrained:
        # the gold standard judged by the same rule: retraining moves Dr-test by chance too
        retrained["verdict"] = [verdict({"retain_test_acc": before}, {"retain_test_acc": after, "forget_test_acc": df})
                                for before, after, df in zip(retrained["original_retain_test_acc"],
                                                             retrained["retain_test_acc"],
                                                             retrained["forget_test_acc"], strict=True)]
        judged = pd.concat([retrained, judged], ignore_index=True)
    rows = []
    for (method, setting), chunk in ordered(judged).groupby(["method", "setting"], sort=False):
        row = {"method": method, "setting": setting, "requests": len(chunk),
               "targets": chunk["forget"].nunique(), "seeds": chunk["seed"].nunique()}
        row.update({outcome: int((chunk["verdict"] == outcome).sum()) for outcome in outcomes_of(judged)})
        row["clean"] = int(chunk["verdict"].isin(SUCCESS).sum())
        for column, _, _, _ in COUNT_GOLD_COLUMNS:  # over every request, where the runs carry them
            values = pd.to_numeric(chunk[column], errors="coerce").dropna() if column in chunk else pd.Series([])
            row[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{column}_std"] = float(values.std(ddof=0)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def outcomes_of(runs: pd.DataFrame) -> tuple[str, ...]:
    """The verdict vocabulary of the runs: against the reference, or the fixed full-class rule."""
    return REFERENCE_VERDICTS if against_reference(runs) else VERDICTS


def verdict_markdown(counts: pd.DataFrame) -> str:
    """The counts as a Markdown table: ``clean`` as "k of n" requests, then the other outcomes."""
    show_setting = bool((counts["setting"] != "").any())
    gold = [c for c in COUNT_GOLD_COLUMNS if f"{c[0]}_mean" in counts and counts[f"{c[0]}_mean"].notna().any()]
    outcomes = REFERENCE_VERDICTS if REFERENCE_VERDICTS[1] in counts else VERDICTS
    headers = ["method", *(["setting"] if show_setting else []), "targets x seeds", outcomes[0],
               *outcomes[1:], *(header for _, header, _, _ in gold)]
    lines = [[str(row["method"]), *([str(row["setting"])] if show_setting else []),
              f"{row['targets']} x {row['seeds']}", f"{row['clean']} of {row['requests']}",
              *(str(row[v]) for v in outcomes[1:]),
              *(mean_std(row[f"{c}_mean"], row[f"{c}_std"], d) for c, _, _, d in gold)]
             for _, row in counts.iterrows()]
    return render(headers, lines, right=1 + show_setting)


def mean_std(mean: float, std: float, decimals: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{decimals}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{decimals}f}"
    return text


def markdown(summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    """The summary as a Markdown table (``setting`` only when some method's settings vary)."""
    columns = columns_for(runs)
    show_setting = bool((summary["setting"] != "").any())
    show_relative = bool(summary[RELATIVE_TIME[0]].notna().any())
    show_clean = bool((summary["clean"] != "").any())
    headers = ["forget", "method", *(["setting"] if show_setting else []), "runs",
               *(header for _, header, _, _ in columns), *([RELATIVE_TIME[1]] if show_relative else []),
               *([success_header(runs)] if show_clean else [])]
    lines = []
    for _, row in summary.iterrows():
        cells = [str(row["forget"]), str(row["method"]), *([str(row["setting"])] if show_setting else []),
                 str(row["runs"])]
        cells += [mean_std(row[f"{c}_mean"], row[f"{c}_std"], d) for c, _, _, d in columns]
        if show_relative:
            cells.append(mean_std(row[RELATIVE_TIME[0]], None, RELATIVE_TIME[2]))
        if show_clean:
            cells.append(str(row["clean"]))
        lines.append(cells)
    return render(headers, lines, right=len(headers) - len(columns) - show_relative - show_clean - 1)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> str:
    """A GitHub Markdown table; columns from index ``right`` on are right-aligned.

    pandas' ``to_markdown`` (tabulate's pipe format) does the layout; the cells are already
    formatted text ("98.25 ± 0.18", "6 of 30"), so number parsing is off, and a literal ``|`` is
    escaped here because tabulate leaves it as it is (it would split the cell in the rendered table).
    """
    frame = pd.DataFrame([[c.replace("|", "\\|") for c in r] for r in rows], columns=list(headers))
    align = ["right" if i >= right else "left" for i in range(len(headers))]
    return frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)


def caption(runs: pd.DataFrame) -> str:
    first = runs.iloc[0]
    df = "Df-train" if runs["forget_test_acc"].isna().all() else "Df-test"
    seeds = sorted(runs["seed"].dropna().astype(int).unique())
    return (f"{first['dataset']} ({first['label_kind']} labels), {first['model']}, task {first['task']}: "
            f"mean ± std over seeds {', '.join(map(str, seeds))} (runs = seeds per row). Dr-test and {df}: "
            "accuracy %; MIA: % of Df the membership attack calls members; ZRF: 1 = like a random model; "
            "time: the method alone, evaluation excluded"
            + ("; time / retrain: mean time over retrain's mean time for the same target"
               if (runs["method"] == "retrain").any() else "")
            + ("; ToW: Tug-of-War against the retrained reference (1 = its accuracies); Δ Dr-test: points above "
               "the reference; JS Df: Jensen-Shannon divergence (bits) from the reference's outputs on Df"
               if "tow" in runs and pd.to_numeric(runs["tow"], errors="coerce").notna().any() else "")
            + ("; MIA AUC: multi-feature attack, Df-train vs held-out non-members (0.5 = unseen)"
               if "mia_auc" in runs and pd.to_numeric(runs["mia_auc"], errors="coerce").notna().any() else "")
            + ("; probe Df: accuracy on Df-test of a 10-shot linear probe on the features"
               if "probe_forget_test_acc" in runs
               and pd.to_numeric(runs["probe_forget_test_acc"], errors="coerce").notna().any() else "")
            + (f"; {verdict_rule(runs)}." if "verdict" in runs and runs["verdict"].notna().any() else "."))


def verdict_rule(runs: pd.DataFrame) -> str:
    """How the table's verdicts were given, in one clause."""
    drop, tolerance, collapse = f"{RETAIN_DROP_MAX:g}", f"{FORGET_TOLERANCE:g}", f"{COLLAPSE_DROP:g}"
    if against_reference(runs):
        return (f"matches retraining: Dr-test at most {drop} points below the retrained reference's and every Df "
                f"accuracy within {tolerance} points of the reference's (under-forgot: above it, over-forgot: below "
                f"it; damaged: Dr-test {drop}-{collapse} points below the reference's, collapsed: more than {collapse})")
    return f"clean: runs with Df-test <= {FORGET_MAX:g} % and Dr-test down by at most {drop} points"
