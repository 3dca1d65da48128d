"""Sections, goals, the machine's description, the table and ``bench/results.json``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from bench.timing import ratio

SECTIONS = ("ssd", "grid", "evaluation", "retrain", "training", "many", "vit_memory", "autocast")
DEFAULT_SECTIONS = ("ssd", "grid", "evaluation", "retrain", "training", "vit_memory")
GOALS = {"ssd_vs_bare": 1.10, "grid_vs_one": 1.5, "evaluation_vs_forward": 1.2, "sweep_evaluation_vs_forward": 1.2,
         "gold_vs_paper_evaluation": 1.5}
#: Ratios where higher is better (a fraction of the bare loop's speed): at least this.
FLOORS = {"training_vs_bare": 0.95}
RESULTS = Path("bench/results.json")


def validation_count(validations: int) -> str:
    """'once', 'twice', '3 times': how many validation passes a training run made."""
    return {1: "once", 2: "twice"}.get(int(validations), f"{int(validations)} times")


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"device": device.type, "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                            check=True).stdout.strip()
    return info


def rows(out: dict) -> list[tuple[str, str, str, str]]:
    """(measure, ratio, goal, detail) for the table."""
    table = []

    def add(name, value, goal, detail, at_least=False):
        table.append((name, "-" if value is None or value != value else f"{value:.3f}",
                      (f">= {goal}" if at_least else f"<= {goal}") if goal else "", detail))

    if "ssd" in out:
        s = out["ssd"]
        add("SSD / bare fwd+bwd over D and Df", s["ssd_vs_bare"], GOALS["ssd_vs_bare"],
            f"{s['ssd_s']:.1f} s vs {s['bare_fwd_bwd_s']:.1f} s (CPU time ratio {s['ssd_vs_bare_cpu']:.3f})")
        add("importance pass, images/s", s["importance_images_per_s"], None,
            f"bare loop {s['bare_images_per_s']:.1f} images/s; {s['images']} images")
    if "grid" in out:
        g = out["grid"]
        add("3x3 alpha x lambda grid (cache) / one SSD run", g["grid_vs_one"], GOALS["grid_vs_one"],
            f"{g['grid_s']:.1f} s; {g['importance_passes']} importance passes; cached run {g['cached_run_mean_s']:.2f} s "
            f"(CPU {g['grid_vs_one_cpu']:.3f})")
    if "evaluation" in out:
        e = out["evaluation"]
        add("evaluate one model / bare forward (D + test)", e["evaluation_vs_forward"], GOALS["evaluation_vs_forward"],
            f"{e['evaluate_one_model_s']:.1f} s vs {e['bare_forward_s']:.1f} s (CPU {e['evaluation_vs_forward_cpu']:.3f})")
        add("sweep run's evaluation stage / bare forward", e["sweep_evaluation_vs_forward"],
            GOALS["sweep_evaluation_vs_forward"],
            f"{e['sweep_evaluation_stage_s']:.1f} s: teacher + original cached (CPU "
            f"{e['sweep_evaluation_vs_forward_cpu']:.3f})")
        if "gold_vs_paper_evaluation" in e:
            add("evaluation with reference, attack, probe / paper's metrics only", e["gold_vs_paper_evaluation"],
                GOALS["gold_vs_paper_evaluation"],
                f"{e['gold_standard_stage_s']:.1f} s vs {e['paper_metrics_stage_s']:.1f} s per sweep run; reference "
                f"published, its outputs cached (CPU {e['gold_vs_paper_evaluation_cpu']:.3f})")
    if "retrain" in out and "ssd_vs_retrain" in out["retrain"]:
        r = out["retrain"]
        add("SSD / 2-epoch retrain on Dr", r["ssd_vs_retrain"], None,
            f"retrain {r['retrain_2_epochs_s']:.1f} s (CPU {r['ssd_vs_retrain_cpu']:.3f})")
    for name, t in out.get("training", {}).items():
        add(f"bare loop / train.py ({name}, {t['image_size']} px, validation included)", t["training_vs_bare"],
            FLOORS["training_vs_bare"], f"{t['train_py_images_per_s']:.0f} vs {t['bare_images_per_s']:.0f} images/s; "
            f"{t['epochs']} epochs of {t['n_train']} images + {t['n_val']} validated "
            f"{validation_count(t.get('validations', t['epochs']))}"
            + (f"; median of {t['repeats']} pairs, " + ", ".join(f"{x:.3f}" for x in sorted(t["ratios"]))
               if t.get("repeats", 1) > 1 else ""), at_least=True)
    for row in out.get("many", {}).get("rows", []):
        add(f"{row['k']} models stacked (vmap) / one at a time: speed-up", row["stacked_vs_one"], None,
            f"{row['models_steps_per_s_stacked']:.2f} vs {row['models_steps_per_s_one_at_a_time']:.2f} model-steps/s; "
            f"largest weight difference {row['max_weight_difference']:.1e}")
    if "vit_memory" in out:
        v = out["vit_memory"]
        runs = ", ".join(f"D={r['n_full']}: +{r[v['measure']]:.0f} MB (peak RSS {r['peak_rss_mb']:.0f} MB) in "
                         f"{r['ssd_s']:.0f} s" for r in v["runs"])
        add(f"ViT 224 px peak memory, large D / small D ({v['measure']})", v["peak_growth_large_vs_small"], None, runs)
    if "autocast" in out:
        a = out["autocast"]
        add("bf16 autocast importance pass: fp32 time / bf16 time", ratio(a["fp32_s"], a["bf16_s"]), None,
            f"{a['fp32_s']:.1f} s vs {a['bf16_s']:.1f} s for D and Df of {a['forget']} ({a['checkpoint']})")
        for alpha, row in a["alphas"].items():
            add(f"bf16 autocast: selection Jaccard vs fp32, alpha {alpha}", row["jaccard"], None,
                f"{row['selected_fp32']} vs {row['selected_bf16']} selected; Df-test acc "
                f"{row['fp32_forget_test_acc']:.1f}/{row['bf16_forget_test_acc']:.1f}, Dr-test "
                f"{row['fp32_retain_test_acc']:.1f}/{row['bf16_retain_test_acc']:.1f} (fp32/bf16)")
    return table


def print_table(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"unlearning bench ({out['machine']['device']}: {out['machine'].get('gpu') or out['machine']['cpu']})")
    for column in ("measure", "ratio", "goal", "detail"):
        table.add_column(column, justify="right" if column == "ratio" else "left")
    for row in rows(out):
        table.add_row(*row)
    Console(width=160).print(table)


def save(out: dict, path: Path, sections: set[str], variant: str | None = None) -> None:
    """Store ``out`` in ``path`` under the device's name (``cpu``, ``cuda``), beside other devices' results.

    A run of other sections than the default set is stored under ``<device>:<sections>``,
    so that a partial run never replaces a full one; a ``variant`` of those sections (other
    training rows) under ``<device>:<sections>:<variant>``.
    """
    from unlearning.io import atomic_write_json

    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(path.read_text())
    key = out["machine"]["device"]
    if sections != set(DEFAULT_SECTIONS) or variant:
        key += ":" + "+".join(s for s in SECTIONS if s in sections)
    if variant:
        key += ":" + variant
    previous[key] = out
    atomic_write_json(path, previous)
