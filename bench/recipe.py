"""The default digits recipe as a benchmark figure: test accuracy over training seeds.

    python -m bench.recipe                      # seeds 0-4, fine labels; trains what is missing
    python -m bench.recipe --seeds 0,1,2 --labels coarse --write

Trains ResNet18 on the bundled digits for each seed with ``python train.py -m seed=...``
(only the seeds with no published model under ``checkpoints/``; ``--retrain`` trains all
again), then reads each model's ``metadata.json`` and prints per seed the test accuracy,
best epoch and training time, with the floor (every seed at least 96.5 %) and the spread
(at most 1.5 points). ``--write`` records the figures in ``bench/results.json`` under
``recipe:<dataset>-<labels>`` with the machine's CPU capability and thread count, because
the same seed gives other bits on another kernel path (docs/recipe.md).

Exit status 0 when the floor and spread hold, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = 96.5
SPREAD = 1.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds (default 0-4)")
    parser.add_argument("--labels", default="fine", choices=("fine", "coarse"))
    parser.add_argument("--checkpoints", default="checkpoints", help="checkpoint folder (train.py's default)")
    parser.add_argument("--retrain", action="store_true", help="train every seed again (overwrite=true)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/results.json")
    return parser.parse_args(argv)


def folder(checkpoints: Path, labels: str, seed: int) -> Path:
    return checkpoints / f"digits-{labels}-resnet18-8px-seed{seed}"


def train(seeds: list[int], labels: str, checkpoints: Path, retrain: bool) -> None:
    missing = [s for s in seeds if retrain or not (folder(checkpoints, labels, s) / "metadata.json").is_file()]
    if not missing:
        return
    command = [sys.executable, str(ROOT / "train.py"), "-m", f"seed={','.join(map(str, missing))}",
               f"labels={labels}", f"paths.checkpoint_dir={checkpoints.resolve()}", "logger=none",
               *(["overwrite=true"] if retrain else [])]
    print("training:", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    checkpoints = Path(args.checkpoints)
    train(seeds, args.labels, checkpoints, args.retrain)
    rows = []
    for seed in seeds:
        metadata = json.loads((folder(checkpoints, args.labels, seed) / "metadata.json").read_text())
        rows.append({"seed": seed, "test_acc": round(metadata["test_acc"], 2), "best_epoch": metadata["best_epoch"],
                     "epochs": metadata["epochs"], "train_time_s": round(metadata["train_time_s"], 1)})
    accuracies = [r["test_acc"] for r in rows]
    spread = max(accuracies) - min(accuracies)
    print(f"\ndigits ({args.labels} labels), ResNet18, 8 px: test accuracy per training seed")
    print("| seed | test acc % | best epoch | train time s |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['test_acc']:.2f} | {r['best_epoch']} of {r['epochs']} | {r['train_time_s']:.0f} |")
    holds = min(accuracies) >= FLOOR and spread <= SPREAD
    print(f"min {min(accuracies):.2f} % (floor {FLOOR}), spread {spread:.2f} points (at most {SPREAD}): "
          + ("holds" if holds else "DOES NOT HOLD"))
    if args.write:
        path = ROOT / "bench" / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        results[f"recipe:digits-{args.labels}"] = {
            "seeds": rows, "min": min(accuracies), "spread": round(spread, 2), "floor": FLOOR,
            "max_spread": SPREAD, "holds": holds, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {path}")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
