"""``make bench``: how close SSD, sweeps and evaluation come to the physical limit (a benchmark, not a test).

A fixed workload (ResNet18 on 3x32x32 inputs, D of 5,000 generated samples, Df = one of
10 classes = 10% of D, batch 64) is timed in one process and every figure is reported as
a ratio to a bare loop over the same batches, measured moments before on the same machine:

* SSD unlearning (importances of D and Df plus dampening, run as ``method=ssd`` runs it,
  through a Lightning Trainer, with an empty cache) / a bare forward+backward loop over
  D and Df; goal <= 1.10;
* a 3x3 alpha x lambda grid with the cache (the first point finds it empty) / one SSD run
  with an empty cache; goal <= 1.5;
* evaluation / one bare forward pass over the evaluated splits (D and the test set):
  one model with all metrics, and a sweep run's whole evaluation stage (random teacher and
  original model from the cache, the unlearned model computed); goal <= 1.2;
* SSD / a 2-epoch retrain on Dr (the cheapest baseline that forgets for sure);
* peak memory of SSD on a ViT at 224 px with D of 2,000 and 20,000 samples (each in a
  fresh process): it must not grow with D;
* importance-pass throughput in images per second.

Wall-clock ratios are the headline; process CPU-time ratios are recorded beside them
because they move less when other jobs share the machine. Results go to
``bench/results.json`` under the device's name, with the machine's description.

Run from the repository root (``bench/`` is not part of the installed package):

    python -m bench                       # CPU, about 15 min on 2 cores
    python -m bench --device cuda         # on a GPU
    python -m bench --sections ssd,grid --n-full 1000   # a quick look
    python -m bench --sections autocast --autocast-checkpoint checkpoints/digits-fine-resnet18-32px-seed0

One module per section: ``importance`` (ssd, grid), ``evaluation``, ``retrain``, ``memory``
(vit_memory), ``autocast``; ``workload`` (generated data, trainer), ``timing`` (clocks) and
``report`` (table, results.json) beside them; ``recipe`` is ``python -m bench.recipe``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.report import DEFAULT_SECTIONS, FLOORS, GOALS, RESULTS, SECTIONS, machine, print_table, save
from bench.workload import Workload


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--n-full", type=int, default=Workload.n_full, help="D's size (the issue's minimum: 5000)")
    parser.add_argument("--n-test", type=int, default=Workload.n_test)
    parser.add_argument("--vit-sizes", default="2000,20000", help="D sizes of the ViT memory runs")
    parser.add_argument("--autocast-checkpoint", type=Path, help="a digits ResNet18 folder made by train.py")
    parser.add_argument("--autocast-forget", default="3")
    parser.add_argument("--autocast-alphas", default="10,50,100,500", help="selection weightings to compare at")
    parser.add_argument("--train-epochs", type=int, default=3, help="epochs of the training section's runs")
    parser.add_argument("--train-settings", help="comma-separated training rows to run instead of the default "
                                                 "ones (bench/training.py: SETTINGS, ATTRIBUTION); stored "
                                                 "under <device>:training:<names>")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--vit-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse(argv)
    import warnings

    from unlearning.cli import quiet_library_warnings

    quiet_library_warnings()
    warnings.filterwarnings("ignore", message=r".*(num_workers|LitLogger|litlogger|val_dataloader).*")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to PyTorch")
    if args.vit_child:
        from bench.memory import vit_memory_child

        print(json.dumps(vit_memory_child(args.vit_child, args.device)))
        return None
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    if "autocast" in sections and not args.autocast_checkpoint:
        raise SystemExit("--sections autocast needs --autocast-checkpoint DIR (a digits ResNet18 made by train.py)")
    if args.train_settings is not None and "training" not in sections:
        raise SystemExit("--train-settings needs the training section (--sections training)")
    from bench.training import chosen_settings

    training_settings = chosen_settings(args.train_settings)
    device = torch.device(args.device)
    w = Workload(n_full=args.n_full, n_test=args.n_test)
    out: dict[str, Any] = {"machine": machine(device), "workload": asdict(w), "goals": GOALS, "floors": FLOORS,
                           "started": datetime.now(UTC).isoformat(timespec="seconds")}
    start = time.perf_counter()
    # each section's module is imported when it runs
    if sections & {"ssd", "grid", "retrain"}:
        from bench.importance import bench_ssd_and_grid

        bench_ssd_and_grid(w, device, sections, out)
    if "evaluation" in sections:
        from bench.evaluation import bench_evaluation

        bench_evaluation(w, device, out)
    if "retrain" in sections:
        from bench.retrain import bench_retrain

        bench_retrain(w, device, out)
    if "training" in sections:
        from bench.training import bench_training

        bench_training(device, out, epochs=args.train_epochs, settings=training_settings)
    if "many" in sections:
        from bench.many import bench_many

        bench_many(out)
    if "vit_memory" in sections:
        from bench.memory import bench_vit_memory

        bench_vit_memory([int(n) for n in args.vit_sizes.split(",")], device, out)
    if "autocast" in sections:
        from bench.autocast import bench_autocast

        bench_autocast(args.autocast_checkpoint, device, args.autocast_forget,
                       [float(a) for a in args.autocast_alphas.split(",")], out)
    out["total_s"] = time.perf_counter() - start
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    save(out, args.output, sections, variant="+".join(training_settings) if args.train_settings else None)
    print_table(out)
    print(f"total {out['total_s']:.0f} s; results: {args.output}")
    return out


if __name__ == "__main__":
    main()
