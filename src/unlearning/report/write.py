"""Write a report folder: per table Markdown and CSV, figures, runs.csv, missing.csv, report.md."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from unlearning.errors import UserError
from unlearning.report.collect import Collection, Missing, collect, relaunch_command, sweep_of
from unlearning.report.figures import is_sweep, per_class_figure, sweep_figure, time_figure
from unlearning.report.poison import corruption_section
from unlearning.report.tables import (
    caption,
    markdown,
    ordered,
    render,
    summarise,
    verdict_counts,
    verdict_markdown,
    verdict_rule,
)
from unlearning.report.zeroshot import zero_shot_section

#: Per-class figures show one panel per method/setting; beyond this a sweep's heatmap says more.
MAX_PER_CLASS_PANELS = 8


@dataclass
class Report:
    """What was written where, for the caller to print."""

    out: Path
    runs: int
    tables: dict[str, str] = field(default_factory=dict)      # group -> Markdown table
    figures: list[Path] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", str(text)).strip("_") or "x"


def write_report(paths: Sequence[str | Path], out: Path) -> Report:
    """Collect every results.json under ``paths`` and write the report into ``out``."""
    collection = collect(paths)
    if not collection.runs:
        raise UserError(nothing_found(paths, collection))
    frame = collection.frame()
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out=out, runs=len(collection.runs), missing=collection.missing)
    sections = [f"# Unlearning report\n\n{len(collection.runs)} complete runs from "
                + ", ".join(f"`{p}`" for p in paths)
                + (f"; {len(collection.missing)} missing (listed at the end)." if collection.missing else ".")]
    for group, runs in frame.groupby("group", sort=False):
        summary = summarise(runs)
        table = markdown(summary, runs)
        name = slug(group)
        summary.to_csv(out / f"{name}.csv", index=False)
        text = f"## {group}\n\n{caption(runs)}\n\n{table}\n"
        counts = verdict_counts(runs)
        if counts is not None:
            counted = verdict_markdown(counts)
            counts.to_csv(out / f"{name}-clean.csv", index=False)
            text += f"\nRequests (forget target x seed) by outcome; {verdict_rule(runs)}:\n\n{counted}\n"
            table += f"\n\n{counted}"
        zero_shot = zero_shot_section(runs, [collection.runs[i].record for i in runs["order"]])
        if zero_shot is not None:  # a group with JiT, GKT or EMMN: the JiT paper's table, with the data each needs
            text += f"\n{zero_shot}"
            table += f"\n\n{zero_shot}"
        corrupted = corruption_section(runs)
        if corrupted is not None:  # poison / mislabel: healed %, accuracy drop and time, as Potion's tables
            text += f"\n{corrupted}"
            table += f"\n\n{corrupted}"
        (out / f"{name}.md").write_text(text)
        report.tables[group] = table
        figures = group_figures(name, group, runs, collection, out / "figures")
        report.figures += figures
        sections.append(text + "".join(f"\n![{f.stem}](figures/{f.name})\n" for f in figures))
    frame.drop(columns=["order"]).to_csv(out / "runs.csv", index=False)
    if collection.missing:
        sections.append(missing_section(collection.missing))
        pd.DataFrame([{"where": str(m.where), "overrides": " ".join(m.overrides), "reason": m.reason}
                      for m in collection.missing]).to_csv(out / "missing.csv", index=False)
    (out / "report.md").write_text("\n\n".join(sections) + "\n")
    return report


def group_figures(name: str, title: str, runs: pd.DataFrame, collection: Collection, folder: Path) -> list[Path]:
    figures = [time_figure(runs, folder / f"{name}_method_time.png", f"{title}: method time")]
    for method, chunk in runs.groupby("method", sort=False):
        if is_sweep(chunk):
            figures.append(sweep_figure(chunk, folder / f"{name}_sweep_{slug(method)}.png", f"{title}: {method}"))
    for forget, chunk in ordered(runs).groupby("forget", sort=False):
        first_seed = chunk[chunk["seed"] == chunk["seed"].min()]
        if len(first_seed) > MAX_PER_CLASS_PANELS:
            continue
        variants = [(f"{row.method}" + (f" ({row.setting})" if row.setting else ""), collection.runs[row.order].record)
                    for row in first_seed.itertuples()]
        figures.append(per_class_figure(variants, folder / f"{name}_per_class_{slug(forget)}.png",
                                        f"{title}: forget {forget}, seed {first_seed['seed'].iloc[0]}"))
    return [f for f in figures if f is not None]


def missing_section(missing: list[Missing]) -> str:
    rows = [[str(m.where), " ".join(m.overrides) or "–", m.reason] for m in missing]
    text = f"## Missing runs ({len(missing)})\n\n" + render(["where", "overrides", "reason"], rows, right=3)
    commands = {relaunch_command(s) for m in missing if (s := sweep_of(m.where))} - {None}
    if commands:
        text += ("\n\nTo fill in a partial sweep, launch it again into the same folder; "
                 "runs with complete results are skipped:\n\n" + "\n".join(f"    {c}" for c in sorted(commands)))
    return text


def nothing_found(paths: Sequence[str | Path], collection: Collection) -> str:
    where = ", ".join(str(p) for p in paths)
    if collection.missing:
        first = collection.missing[0]
        return (f"no complete results.json under {where}: {len(collection.missing)} run(s) found, none finished "
                f"(e.g. {first.where}: {first.reason}). Wait for the runs to finish, or look at their logs.")
    return (f"no results.json and no run folders under {where}. Give the folder of a run or multirun that "
            "unlearn.py wrote (e.g. outputs/multirun/unlearn/<experiment>/<time>), after "
            "`python unlearn.py -m experiment=NAME` has run.")
