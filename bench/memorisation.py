"""Does a training recipe memorise? The original model's membership-attack AUC on random requests.

    python -m bench.memorisation --dataset fashion_mnist --write                  # the benchmark setting
    python -m bench.memorisation --dataset fashion_mnist_v1 --write               # its first recipe
    python -m bench.memorisation --dataset digits --seeds 0 --sizes 100

A benchmark of unlearning needs source models that memorise their training data, or no attack can
tell a method that forgot from one that did not (issue 27 asks the original's multi-feature attack
AUC on random forgetting to be at least 0.60). ``python -m bench.recipe`` measures accuracy and
convergence, not this; a recipe change must be checked here too before the tables are remade with it.

For each training seed and request size it runs ``python unlearn.py task=random method=baseline
evaluation.reference=none`` (the untouched original: no method, no retrained reference, so a
request costs an evaluation, about 25 s on 2 cores for Fashion-MNIST; source models that are missing
are trained first, as unlearn.py does) and reads from the run's ``results.json`` the original's
attack AUC (Df-train against held-out test images, the same attack as the tables' ``MIA AUC``), its
train/validation/test accuracy. It judges **memorises**: every request's AUC is at least 0.60.

``--write`` records the rows in ``bench/results.json`` under ``memorisation:<dataset>`` (``--key``
to name it otherwise). Exit status 0 when it memorises, 1 when not, 2 when a run fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_AUC = 0.60
QUIET = ["logger=none", "trainer.enable_progress_bar=false"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.memorisation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist", help="a conf/dataset name (default fashion_mnist)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    parser.add_argument("--sizes", default="1000,100", help="comma-separated random request sizes (default 1000,100)")
    parser.add_argument("--override", action="append", default=[],
                        help="one more unlearn.py override (repeatable), e.g. dataset.training.lr=0.025")
    parser.add_argument("--root", help="paths.root_dir holding checkpoints/ (default: the repository)")
    parser.add_argument("--write", action="store_true", help="record the rows in bench/results.json")
    parser.add_argument("--key", help="the results.json key (default memorisation:<dataset>)")
    return parser.parse_args(argv)


def original_of(dataset: str, seed: int, size: int, args: argparse.Namespace, run_dir: Path) -> dict:
    """One request's figures for the untouched original model, from its run's results.json."""
    command = [sys.executable, str(ROOT / "unlearn.py"), f"dataset={dataset}", "task=random", f"task.n_forget={size}",
               "method=baseline", "evaluation.reference=none", f"seed={seed}", *QUIET,
               *([f"paths.root_dir={Path(args.root).resolve()}"] if args.root else []), *args.override,
               f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[1:])}` failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    record = json.loads((run_dir / "results.json").read_text())
    original = record["metrics"]["original"]
    return {"seed": seed, "n_forget": size, "mia_auc": round(original["mia_auc"], 4),
            "forget_train_acc": round(original["forget_train_acc"], 2), "val_acc": round(original["val_acc"], 2),
            "test_acc": round(original["test_acc"], 2), "source": Path(record["source_checkpoint"]).name}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"{args.dataset}: the original model's multi-feature attack on random requests (Df-train vs held-out)")
    print("| seed | Df images | attack AUC | Df-train acc % | validation acc % | test acc % | model |\n"
          "|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="memorisation-") as scratch:
        for seed in seeds:
            for size in sizes:
                try:
                    row = original_of(args.dataset, seed, size, args, Path(scratch) / f"seed{seed}-n{size}")
                except RuntimeError as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 2
                rows.append(row)
                print(f"| {seed} | {size} | {row['mia_auc']:.3f} | {row['forget_train_acc']:.2f} | {row['val_acc']:.2f} "
                      f"| {row['test_acc']:.2f} | {row['source']} |", flush=True)
    lowest = min(row["mia_auc"] for row in rows)
    memorises = lowest >= MIN_AUC
    mean = {size: round(sum(r["mia_auc"] for r in rows if r["n_forget"] == size) / len(seeds), 4) for size in sizes}
    print(f"lowest attack AUC {lowest:.3f} (at least {MIN_AUC}); mean by size "
          + ", ".join(f"{size}: {value:.3f}" for size, value in mean.items()) + ": "
          + ("memorises" if memorises else "DOES NOT MEMORISE"))
    if args.write:
        path = ROOT / "bench" / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        results[args.key or f"memorisation:{args.dataset}"] = {
            "what": "the original model's multi-feature attack AUC (Df-train against held-out test images) on random "
                    "requests: python unlearn.py task=random method=baseline evaluation.reference=none per row",
            "dataset": args.dataset, "overrides": args.override, "rows": rows, "min": lowest,
            "min_forget_train_acc": min(row["forget_train_acc"] for row in rows),
            "mean_by_size": {str(k): v for k, v in mean.items()}, "min_auc": MIN_AUC, "memorises": memorises}
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {path}")
    return 0 if memorises else 1


if __name__ == "__main__":
    sys.exit(main())
