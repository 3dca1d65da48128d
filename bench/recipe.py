"""The default digits recipe as a benchmark figure: test accuracy over training seeds.

    python -m bench.recipe                      # seeds 0-4, fine labels; trains what is missing
    python -m bench.recipe --seeds 0,1,2 --labels coarse --write
    python -m bench.grey_folder data/grey-digits # a real folder of 28x28 grey PNGs, then:
    python -m bench.recipe --dataset imagefolder --root data/grey-digits --image-size 16 \
        --override dataset.augment.hflip=false --write

Trains ResNet18 on the bundled digits for each seed with ``python train.py -m seed=...``
(only the seeds with no published model under ``checkpoints/``; ``--retrain`` trains all
again), then reads each model's ``metadata.json`` and prints per seed the test accuracy,
best epoch, training time and validation accuracy per epoch, with the floor (every seed at least 96.5 %) and the spread
(at most 1.5 points). ``--write`` records the figures in ``bench/results.json`` under
``recipe:<dataset>-<labels>`` (``recipe:imagefolder-<labels>-<size>px`` for a folder) with the machine's CPU capability and thread count, because
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
    parser.add_argument("--dataset", default="digits", choices=("digits", "imagefolder"))
    parser.add_argument("--root", help="dataset.root of an image folder (e.g. made by python -m bench.grey_folder)")
    parser.add_argument("--image-size", type=int, help="dataset.image_size (default: the dataset's own; 8 for digits)")
    parser.add_argument("--override", action="append", default=[],
                        help="one more train.py override (repeatable), e.g. dataset.training.lr=0.05")
    parser.add_argument("--checkpoints", default="checkpoints", help="checkpoint folder (train.py's default)")
    parser.add_argument("--retrain", action="store_true", help="train every seed again (overwrite=true)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/results.json")
    return parser.parse_args(argv)


def image_size(args: argparse.Namespace) -> int:
    if args.image_size:
        return args.image_size
    if args.dataset == "digits":
        return 8
    raise SystemExit("error: --image-size is needed with --dataset imagefolder (e.g. 16 for small grey images)")


def folder(checkpoints: Path, args: argparse.Namespace, seed: int) -> Path:
    return checkpoints / f"{args.dataset}-{args.labels}-resnet18-{image_size(args)}px-seed{seed}"


def dataset_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [f"dataset={args.dataset}"]
    if args.dataset == "imagefolder":
        if not args.root or not Path(args.root).is_dir():
            raise SystemExit(f"error: --root must name an image folder (got {args.root!r}); "
                             "python -m bench.grey_folder PATH writes one")
        overrides.append(f"dataset.root={Path(args.root).resolve()}")
    if args.image_size:
        overrides.append(f"dataset.image_size={args.image_size}")
    return overrides + list(args.override)


def train(seeds: list[int], args: argparse.Namespace, checkpoints: Path) -> None:
    missing = [s for s in seeds if args.retrain or not (folder(checkpoints, args, s) / "metadata.json").is_file()]
    if not missing:
        return
    command = [sys.executable, str(ROOT / "train.py"), "-m", f"seed={','.join(map(str, missing))}",
               f"labels={args.labels}", f"paths.checkpoint_dir={checkpoints.resolve()}", "logger=none",
               *dataset_overrides(args), *(["overwrite=true"] if args.retrain else [])]
    print("training:", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    checkpoints = Path(args.checkpoints)
    train(seeds, args, checkpoints)
    rows = []
    for seed in seeds:
        published = folder(checkpoints, args, seed)
        metadata = json.loads((published / "metadata.json").read_text())
        if metadata.get("stand_in_of_seed") is not None:  # the tests' copy of another seed, not a trained model
            what = (f"{published} is a test stand-in (a copy of seed {metadata['stand_in_of_seed']}), "
                    f"not a model trained with seed {seed}")
            if args.write:  # never record a copy as a benchmark figure
                print(f"error: {what}: delete it or pass --retrain", file=sys.stderr)
                return 2
            print(f"warning: {what}", file=sys.stderr)
        rows.append({"seed": seed, "test_acc": round(metadata["test_acc"], 2), "best_epoch": metadata["best_epoch"],
                     "epochs": metadata["epochs"], "train_time_s": round(metadata["train_time_s"], 1),
                     # models trained before the curve was recorded have none
                     "val_acc_per_epoch": metadata.get("val_acc_per_epoch")})
    accuracies = [r["test_acc"] for r in rows]
    spread = max(accuracies) - min(accuracies)
    print(f"\n{args.dataset} ({args.labels} labels), ResNet18, {image_size(args)} px: test accuracy per training seed")
    print("| seed | test acc % | best epoch | train time s | validation acc per epoch % |\n|---:|---:|---:|---:|---|")
    for r in rows:
        curve = ", ".join(f"{v:.0f}" for v in r["val_acc_per_epoch"] or []) or "not recorded"
        print(f"| {r['seed']} | {r['test_acc']:.2f} | {r['best_epoch']} of {r['epochs']} | {r['train_time_s']:.0f} "
              f"| {curve} |")
    holds = min(accuracies) >= FLOOR and spread <= SPREAD
    print(f"min {min(accuracies):.2f} % (floor {FLOOR}), spread {spread:.2f} points (at most {SPREAD}): "
          + ("holds" if holds else "DOES NOT HOLD"))
    if args.write:
        path = ROOT / "bench" / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        key = (f"recipe:digits-{args.labels}" if args.dataset == "digits" and not args.image_size
               else f"recipe:{args.dataset}-{args.labels}-{image_size(args)}px")
        results[key] = {
            "seeds": rows, "overrides": dataset_overrides(args)[1:], "min": min(accuracies), "spread": round(spread, 2), "floor": FLOOR,
            "max_spread": SPREAD, "holds": holds, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {path}")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
