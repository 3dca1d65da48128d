"""A training recipe as a benchmark figure: accuracy, convergence and time over training seeds.

    python -m bench.recipe                                  # digits, seeds 0-4; trains what is missing
    python -m bench.recipe --dataset fashion_mnist --write  # the benchmark setting
    python -m bench.recipe --seeds 0,1,2 --labels coarse --write
    python -m bench.grey_folder data/grey-digits            # a real folder of 28x28 grey PNGs, then:
    python -m bench.recipe --dataset imagefolder --root data/grey-digits --image-size 16 \\
        --override dataset.augment.hflip=false --write

Trains ResNet18 for each seed with ``python train.py -m seed=...`` (only the seeds with no
published model; ``--retrain`` trains all again), validating every epoch; a published model that was
validated every N epochs (``dataset.training.validate_every``, Fashion-MNIST's default 4) gets a copy
trained beside the checkpoint folder (``<checkpoints>-validated-every-epoch``: the same weights, the
whole curve) and is never replaced. Then it reads each model's ``metadata.json`` and
prints per seed the test accuracy, the validation accuracy of the kept (last) epoch and of the
best epoch, the training time and the validation curve. It judges three things:

* **floor**: every seed reaches the dataset's floor (digits 96.5 %, Fashion-MNIST 83 %);
* **spread**: the seeds' test accuracies lie within 1.5 points of each other;
* **convergence**: on every seed the last epoch is within 1 point of the best validation epoch
  (a recipe whose validation accuracy still swings at the end leaves the outcome to chance).

It also reports **time to accuracy** per seed: the seconds of training (validation included)
until the validation accuracy reached the dataset's floor and stayed there for every later
epoch, from the per-epoch times train.py records (``elapsed_s_per_epoch``; for models trained
before they were recorded, estimated from the total time as equal epochs, marked ``estimated``).

``--write`` records the figures in ``bench/results.json`` under ``recipe:<dataset>-<labels>``
(``...-<size>px`` with ``--image-size``), with the machine's CPU capability and thread count,
because the same seed gives other bits on another kernel path (docs/recipe.md).

Exit status 0 when all three hold, 1 when not, 2 on a refused ``--write``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"digits": 96.5, "fashion_mnist": 83.0, "imagefolder": 96.5}
SPREAD = 1.5
CONVERGENCE = 1.0
NATIVE = {"digits": 8, "fashion_mnist": 28}  # the files' own size, where the config does not resize


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds (default 0-4)")
    parser.add_argument("--labels", default="fine", choices=("fine", "coarse"))
    parser.add_argument("--dataset", default="digits", choices=tuple(FLOORS))
    parser.add_argument("--root", help="dataset.root of an image folder (e.g. made by python -m bench.grey_folder)")
    parser.add_argument("--image-size", type=int, help="dataset.image_size (default: the dataset's own)")
    parser.add_argument("--override", action="append", default=[],
                        help="one more train.py override (repeatable), e.g. dataset.training.lr=0.05")
    parser.add_argument("--checkpoints", default="checkpoints", help="checkpoint folder (train.py's default)")
    parser.add_argument("--retrain", action="store_true", help="train every seed again (overwrite=true)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/results.json")
    parser.add_argument("--key", help="the results.json key (default recipe:<dataset>-<labels>[-<size>px])")
    return parser.parse_args(argv)


def image_size(args: argparse.Namespace) -> int:
    """The size the recipe trains at: --image-size, else the dataset config's image_size, else the files' own."""
    from bench.compose import compose
    from unlearning.jobs.builders import image_size as configured_size

    if args.image_size:
        return args.image_size
    if args.dataset not in NATIVE:
        raise SystemExit("error: --image-size is needed with --dataset imagefolder (e.g. 16 for small grey images)")
    return configured_size(compose("train", [f"dataset={args.dataset}"])) or NATIVE[args.dataset]


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


def folder(checkpoints: Path, args: argparse.Namespace, seed: int) -> Path:
    """Where train.py publishes this recipe's model of ``seed`` (the registry's own name for it)."""
    from bench.compose import compose
    from unlearning.jobs.builders import published_model_path

    cfg = compose("train", [f"labels={args.labels}", f"seed={seed}", f"paths.checkpoint_dir={checkpoints.resolve()}",
                            *dataset_overrides(args)])
    return published_model_path(cfg, args.labels, image_size(args))


def validated_every_epoch(metadata_file: Path) -> bool:
    """Whether a model's metadata holds a validation point for every epoch (the convergence criterion
    reads them all; a model trained with ``dataset.training.validate_every`` > 1 has gaps)."""
    if not metadata_file.is_file():
        return False
    curve = json.loads(metadata_file.read_text()).get("val_acc_per_epoch") or []
    return bool(curve) and None not in curve


def every_epoch_copies(checkpoints: Path) -> Path:
    """Where the bench trains its own copy of a published model that was validated every N epochs: the
    same weights (the cadence does not change them) with the whole curve; the published one is untouched."""
    return checkpoints.parent / f"{checkpoints.name}-validated-every-epoch"


def model_of(checkpoints: Path, args: argparse.Namespace, seed: int) -> Path:
    """The folder whose metadata the bench reads for ``seed``: the published model, or its every-epoch copy."""
    published = folder(checkpoints, args, seed)
    if (published / "metadata.json").is_file() and not validated_every_epoch(published / "metadata.json"):
        return folder(every_epoch_copies(checkpoints), args, seed)
    return published


def train(seeds: list[int], args: argparse.Namespace, checkpoints: Path) -> None:
    """Train, validating every epoch, the seeds with no published model (all with ``--retrain``) and the
    every-epoch copies of published models that were validated less often."""
    copies = every_epoch_copies(checkpoints)
    jobs = {checkpoints: [], copies: []}
    for seed in seeds:
        published = folder(checkpoints, args, seed) / "metadata.json"
        if args.retrain or not published.is_file():
            jobs[checkpoints].append(seed)
        elif not validated_every_epoch(published) and not validated_every_epoch(folder(copies, args, seed) / "metadata.json"):
            jobs[copies].append(seed)
    for destination, missing in jobs.items():
        if not missing:
            continue
        command = [sys.executable, str(ROOT / "train.py"), "-m", f"seed={','.join(map(str, missing))}",
                   f"labels={args.labels}", f"paths.checkpoint_dir={destination.resolve()}", "logger=none",
                   *dataset_overrides(args), "dataset.training.validate_every=1",
                   *(["overwrite=true"] if args.retrain else [])]
        print("training:", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)


def time_to_accuracy(curve: list[float], elapsed: list[float] | None, train_time_s: float,
                     target: float) -> dict:
    """Seconds until the validation curve reached ``target`` and stayed at or above it (None: never)."""
    if not curve or None in curve:  # no point for some epochs (validate_every > 1): not measurable
        return {"time_to_accuracy_s": None, "epochs_to_accuracy": None, "time_to_accuracy_estimated": None}
    below = [epoch for epoch, value in enumerate(curve) if value < target]
    first = below[-1] + 1 if below else 0
    if first >= len(curve):
        return {"time_to_accuracy_s": None, "epochs_to_accuracy": None, "time_to_accuracy_estimated": False}
    estimated = not elapsed or len(elapsed) != len(curve)
    seconds = train_time_s * (first + 1) / len(curve) if estimated else elapsed[first]
    return {"time_to_accuracy_s": round(seconds, 1), "epochs_to_accuracy": first + 1,
            "time_to_accuracy_estimated": estimated}


def seed_row(seed: int, metadata: dict, target: float) -> dict:
    """One seed's figures from its model's metadata; time to accuracy against ``target`` (validation %)."""
    curve = metadata.get("val_acc_per_epoch") or []
    last, best = (curve[-1], max(curve)) if curve else (None, None)
    return {"seed": seed, "test_acc": round(metadata["test_acc"], 2), "val_acc_last": last, "val_acc_best": best,
            "best_val_epoch": curve.index(best) + 1 if curve else None, "last_vs_best": None if not curve
            else round(best - last, 2), "epochs": metadata["epochs"], "n_train": metadata.get("n_train"),
            "train_time_s": round(metadata["train_time_s"], 1), "val_acc_per_epoch": curve,
            **time_to_accuracy(curve, metadata.get("elapsed_s_per_epoch"), metadata["train_time_s"], target)}


def judge(rows: list[dict], floor: float) -> dict:
    accuracies = [r["test_acc"] for r in rows]
    gaps = [r["last_vs_best"] for r in rows if r["last_vs_best"] is not None]
    spread = round(max(accuracies) - min(accuracies), 2)
    return {"min": min(accuracies), "spread": spread, "floor": floor, "max_spread": SPREAD,
            "max_last_vs_best": max(gaps) if gaps else None, "convergence": CONVERGENCE,
            "holds": min(accuracies) >= floor and spread <= SPREAD and bool(gaps) and max(gaps) <= CONVERGENCE,
            "mean_train_time_s": round(sum(r["train_time_s"] for r in rows) / len(rows), 1),
            "time_to_accuracy_target": floor, "mean_time_to_accuracy_s": mean_time_to_accuracy(rows)}


def mean_time_to_accuracy(rows: list[dict]) -> float | None:
    """The seeds' mean time to accuracy; None when a seed never reached it (then it is not a mean)."""
    times = [r.get("time_to_accuracy_s") for r in rows]
    return None if not times or None in times else round(sum(times) / len(times), 1)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    checkpoints = Path(args.checkpoints)
    train(seeds, args, checkpoints)
    rows = []
    for seed in seeds:
        published = model_of(checkpoints, args, seed)
        metadata = json.loads((published / "metadata.json").read_text())
        if metadata.get("stand_in_of_seed") is not None:  # the tests' copy of another seed, not a trained model
            what = (f"{published} is a test stand-in (a copy of seed {metadata['stand_in_of_seed']}), "
                    f"not a model trained with seed {seed}")
            if args.write:  # never record a copy as a benchmark figure
                print(f"error: {what}: delete it or pass --retrain", file=sys.stderr)
                return 2
            print(f"warning: {what}", file=sys.stderr)
        rows.append(seed_row(seed, metadata, FLOORS[args.dataset]))
    verdict = judge(rows, FLOORS[args.dataset])
    print(f"\n{args.dataset} ({args.labels} labels), ResNet18, {image_size(args)} px: per training seed")
    print(f"| seed | test acc % | val acc % last / best (epoch) | train time s | time to {FLOORS[args.dataset]} % "
          "val s (epoch) | validation acc per epoch % |\n|---:|---:|---|---:|---:|---|")
    for r in rows:
        curve = ", ".join(f"{v:.1f}" for v in r["val_acc_per_epoch"]) or "not recorded"
        reached = ("never" if r["time_to_accuracy_s"] is None else f"{r['time_to_accuracy_s']:.0f} ({r['epochs_to_accuracy']})"
                   + (" est." if r["time_to_accuracy_estimated"] else ""))
        print(f"| {r['seed']} | {r['test_acc']:.2f} | {r['val_acc_last']} / {r['val_acc_best']} ({r['best_val_epoch']} "
              f"of {r['epochs']}) | {r['train_time_s']:.0f} | {reached} | {curve} |")
    print(f"min {verdict['min']:.2f} % (floor {verdict['floor']}), spread {verdict['spread']:.2f} points (at most "
          f"{SPREAD}), last epoch at most {verdict['max_last_vs_best']} points below the best validation epoch "
          f"(at most {CONVERGENCE}): " + ("holds" if verdict["holds"] else "DOES NOT HOLD"))
    if args.write:
        path = ROOT / "bench" / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        key = args.key or (f"recipe:{args.dataset}-{args.labels}" + (f"-{args.image_size}px" if args.image_size else ""))
        results[key] = {
            "seeds": rows, "overrides": dataset_overrides(args)[1:], **verdict,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        }
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {path}")
    return 0 if verdict["holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
