"""PNG figures of a report, drawn with matplotlib's Agg backend (no display needed).

- ``sweep_figure``: Dr-test and Df accuracy over SSD's alpha x lambda, as annotated heatmaps
  for a grid sweep, or as a scatter for a search that samples freely (Optuna);
- ``per_class_figure``: per-class test accuracy before and after, one panel per method;
- ``time_figure``: each method's own wall time (mean ± std over runs) on a log axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from unlearning.record import RunRecord  # noqa: E402

ALPHA, LAMBDA = "param.alpha", "param.lambda_"
DPI = 120


def df_column(runs: pd.DataFrame) -> tuple[str, str]:
    """The forget-set accuracy a figure shows: Df-test, or Df-train for random forgetting."""
    if runs["forget_test_acc"].isna().all():
        return "forget_train_acc", "Df-train acc %"
    return "forget_test_acc", "Df-test acc %"


def save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def numeric_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with a numeric alpha and lambda, as floats (``method.alpha=auto`` runs have no point on a grid)."""
    numbers = runs.assign(**{column: pd.to_numeric(runs[column], errors="coerce") for column in (ALPHA, LAMBDA)})
    return numbers.dropna(subset=[ALPHA, LAMBDA]).astype({ALPHA: float, LAMBDA: float})


def is_sweep(runs: pd.DataFrame) -> bool:
    """True when one method's runs vary a numeric alpha and/or lambda (two or more settings)."""
    if ALPHA not in runs or LAMBDA not in runs:
        return False
    return len(numeric_settings(runs)[[ALPHA, LAMBDA]].drop_duplicates()) >= 2


def sweep_figure(runs: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Dr-test and Df accuracy of one method over alpha x lambda (means over seeds and targets)."""
    if not is_sweep(runs):
        return None
    runs = numeric_settings(runs)
    df, df_label = df_column(runs)
    cells = runs.groupby([ALPHA, LAMBDA])[["retain_test_acc", df, "objective"]].mean()
    alphas, lambdas = sorted(runs[ALPHA].unique()), sorted(runs[LAMBDA].unique())
    grid = len(alphas) * len(lambdas) <= 2 * len(cells)
    panels = (("retain_test_acc", "Dr-test acc %"), (df, df_label))
    width = max(4.0, 0.9 * len(alphas) + 2.0) if grid else 5.0
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, max(3.2, 0.6 * len(lambdas) + 2.0) if grid else 4.2))
    for ax, (column, label) in zip(axes, panels, strict=True):
        before = runs[f"original_{column}"].mean()
        if grid:
            matrix = cells[column].unstack(ALPHA).reindex(index=lambdas, columns=alphas)
            image = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100, origin="lower",
                              aspect="auto")
            annotate(ax, matrix.to_numpy(dtype=float))
            ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
            ax.set_yticks(range(len(lambdas)), [f"{v:g}" for v in lambdas])
        else:
            points = cells.reset_index()
            image = ax.scatter(points[ALPHA], points[LAMBDA], c=points[column], cmap="viridis", vmin=0, vmax=100,
                               s=70, edgecolors="black", linewidths=0.5)
            best = points.loc[points["objective"].idxmin()]
            ax.scatter([best[ALPHA]], [best[LAMBDA]], marker="*", s=320, facecolors="none", edgecolors="red",
                       linewidths=1.5, label=f"best objective ({best['objective']:.1f})")
            ax.set_xscale("log")
            ax.legend(loc="upper left", fontsize=8)
        ax.set_xlabel("alpha (selection weighting)")
        ax.set_ylabel("lambda (dampening constant)")
        ax.set_title(f"{label}  (before: {before:.1f})", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    kind = f"{len(alphas)} alpha x {len(lambdas)} lambda grid" if grid else f"{len(cells)} sampled settings"
    fig.suptitle(f"{title}\n{kind}; mean over {runs['seed'].nunique()} seed(s) and "
                 f"{runs['forget'].nunique()} forget target(s)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def annotate(ax: plt.Axes, values: np.ndarray) -> None:
    for (row, col), value in np.ndenumerate(values):
        if math.isnan(value):
            ax.text(col, row, "n/a", ha="center", va="center", fontsize=8, color="grey")
        else:
            ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=9,
                    color="black" if value > 60 else "white")


def forgotten_class(record: RunRecord) -> str | None:
    """The class whose test accuracy should drop: the class, or a sub-class's superclass."""
    description = str(record.forget or "")
    if description.startswith("sub-class ") and " of " in description:
        return description.rsplit(" of ", 1)[1]
    for prefix in ("class ", "superclass "):
        if description.startswith(prefix):
            return description[len(prefix):]
    return None


def per_class_figure(variants: list[tuple[str, RunRecord]], path: Path, title: str) -> Path | None:
    """Per-class test accuracy before (grey) and after (colour) for each (label, record) given."""
    variants = [(label, r) for label, r in variants
                if (r.metrics or {}).get("unlearned", {}).get("per_class_test_acc")]
    if not variants:
        return None
    names = list(variants[0][1].class_names or [])
    before = variants[0][1].metrics["original"]["per_class_test_acc"]
    names = names if len(names) == len(before) else [str(i) for i in range(len(before))]
    x = np.arange(len(names))
    target = forgotten_class(variants[0][1])
    fig, axes = plt.subplots(len(variants), 1, sharex=True, squeeze=False,
                             figsize=(min(24.0, max(6.0, 0.32 * len(names) + 2.5)), 1.7 * len(variants) + 1.2))
    for ax, (label, record) in zip(axes[:, 0], variants, strict=True):
        after = record.metrics["unlearned"]["per_class_test_acc"]
        ax.bar(x - 0.2, record.metrics["original"]["per_class_test_acc"], 0.4, color="0.7", label="before")
        ax.bar(x + 0.2, after, 0.4, color="tab:blue", label="after")
        if target in names:
            ax.axvspan(names.index(target) - 0.5, names.index(target) + 0.5, color="tab:red", alpha=0.12)
        ax.set_ylim(0, 105)
        ax.set_ylabel("acc %", fontsize=8)
        ax.set_title(label, loc="left", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=2, frameon=False)
    axes[-1, 0].set_xticks(x, names, rotation=90 if len(names) > 12 else 0)
    for tick in axes[-1, 0].get_xticklabels():
        if tick.get_text() == target:
            tick.set_color("tab:red")
            tick.set_fontweight("bold")
    shade = f" (forgotten: {target}, shaded)" if target in names else ""
    fig.suptitle(f"{title}\nper-class test accuracy before and after{shade}", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def time_figure(runs: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Mean ± std of each method's (and setting's) wall time over all its runs, log axis."""
    labels = runs["method"] + runs["setting"].map(lambda s: f" ({s})" if s else "")
    stats = runs.assign(label=labels).groupby("label", sort=False)["method_time_s"].agg(["mean", "std", "count"])
    stats = stats.dropna(subset=["mean"])
    if stats.empty:
        return None
    floor = 1e-3  # a method that does nothing (baseline) takes microseconds: drawn at 1 ms
    means = stats["mean"].clip(lower=floor)
    errors = stats["std"].fillna(0.0).clip(upper=means - floor * 0.5)
    fig, ax = plt.subplots(figsize=(7.0, 0.42 * len(stats) + 1.6))
    y = np.arange(len(stats))[::-1]
    ax.barh(y, means, xerr=errors, color="tab:blue", alpha=0.85, capsize=3)
    for pos, mean, top, count in zip(y, stats["mean"], means + errors, stats["count"], strict=True):
        text = f"{mean:.3g} s" if mean >= floor else "< 1 ms"
        ax.text(top * 1.25, pos, f"{text} (n={count})", va="center", fontsize=8)
    ax.set_yticks(y, stats.index, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, float(means.max()) * 20)
    ax.set_xlabel("method time, s (log scale; evaluation excluded)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)
