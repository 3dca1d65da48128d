"""Developer harness: try automatic-SSD search variants on every digit without the full job.

Importances are computed once per (image size, variant, split) and kept under --work; each
variant then only runs its search (which sees training data only) and the harness scores the
result on the test set (for reporting, never fed back into the search).

    python -m scripts.auto_ssd_explore --size 8 --variant ssd --settings '{"max_steps": 4}'

Run it from the repository root as a module (it imports tests/ and needs the digits models in --ckpts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

from tests.conftest import QUIET, compose_config
from unlearning.evaluation.predictions import predict
from unlearning.jobs.builders import build_datamodule, build_model, build_task
from unlearning.jobs.unlearn import find_source_checkpoint
from unlearning.methods.ssd import (
    AutoSearch,
    Probe,
    auto_settings,
    class_coherent_batches,
    dampen,
    importances,
    sample_images,
)
from unlearning.models.checkpoints import load_checkpoint, load_into


def setup(size: int | None, digit: str, ckpts: str, extra: list[str]):
    overrides = [f"paths.checkpoint_dir={ckpts}", "paths.root_dir=/tmp/autossd", f"task.forget={digit}", *QUIET, *extra]
    if size and size != 8:
        overrides.append(f"dataset.image_size={size}")
    cfg = compose_config("unlearn", overrides)
    data = build_datamodule(cfg, build_task(cfg))
    data.setup()
    state, _ = load_checkpoint(find_source_checkpoint(cfg, data, Path("/tmp/autossd/x")))
    model = load_into(build_model(cfg, data.num_classes, data.channels), state, "digits").eval()
    return cfg, data, model


def cached_importance(work: Path, key: str, model, data, split: str, variant: str, by_class: bool = False):
    """``by_class``: over class-coherent batches, grouped as the job groups them (SSD: label; LFSSD: prediction)."""
    path = work / f"{key}{'-by-class' if by_class else ''}.pt"
    if path.exists():
        return torch.load(path)
    loader = data.loader(split, batch_size=64)
    if by_class:
        classes = torch.as_tensor(data.labels_of(split)) if variant == "ssd" else predict(model, loader)[0].argmax(1)
        dataset = data.dataset(split)
        loader = [default_collate([dataset[i] for i in batch]) for batch in class_coherent_batches(classes, 64)]
    value = importances(model, loader, variant)
    torch.save(value, path)
    return value


@torch.no_grad()
def test_scores(model, data) -> tuple[float, float]:
    images, labels = zip(*[data.dataset("test")[i] for i in range(len(data.indices("test")))], strict=True)
    images, labels = torch.stack(images), torch.tensor(labels)
    pred = torch.cat([model(images[i:i + 512]).argmax(1) for i in range(0, len(images), 512)])
    correct = (pred == labels).float()
    f, r = torch.as_tensor(data.indices("forget_test")), torch.as_tensor(data.indices("retain_test"))
    return 100 * correct[f].mean().item(), 100 * correct[r].mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--variant", default="ssd")
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--settings", default="{}")
    parser.add_argument("--fixed", type=float, default=None, help="fixed alpha (lambda 1) instead of the search")
    parser.add_argument("--ckpts", default="checkpoints",
                        help="folder of published models (train.py's paths.checkpoint_dir); a missing one is trained first")
    parser.add_argument("--work", default="/tmp/autossd/explore")
    parser.add_argument("--extra", default="")
    parser.add_argument("--tag", default="")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 to run two harnesses side by side)")
    parser.add_argument("--reference", choices=("by-class", "mixed"), default="by-class",
                        help="imp_D for the search: class-coherent batches (the job's) or the paper's mixed batches")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    settings = auto_settings(json.loads(args.settings))
    extra = [e for e in args.extra.split(" ") if e]
    clean, rows = 0, []
    for digit in args.digits.split(","):
        cfg, data, model = setup(args.size, digit, args.ckpts, extra)
        tag = f"{args.size}-{args.variant}-{'_'.join(extra)}"
        by_class = args.reference == "by-class" and not args.fixed
        full = cached_importance(work, f"{tag}-full", model, data, "full", args.variant, by_class)
        forget = cached_importance(work, f"{tag}-forget{digit}", model, data, "forget", args.variant)
        f0, r0 = test_scores(model, data)
        start = time.perf_counter()
        if args.fixed:
            changed = dampen(model, full, forget, args.fixed, 1.0)
            info = {"chosen_alpha": args.fixed, "n_trials": 1, "parameters_changed": changed, "n_steps": 1}
        else:
            probe = Probe(sample_images(data.dataset("forget"), settings.forget_samples, settings.seed),
                          sample_images(data.dataset("retain"), settings.retain_samples, settings.seed + 1))

            def refresh(m, data=data):
                return importances(m, data.loader("forget", batch_size=64), args.variant)

            n_forget = len(data.indices("forget"))
            search = AutoSearch(settings, importance_work=3.0 * (len(data.indices("full")) + n_forget))
            if by_class and args.variant != "ssd":
                search.spent += len(data.indices("full"))  # the job counts LFSSD's prediction pass too
            info = search.run(model, full, forget, probe, refresh_forget=refresh, refresh_cost=3.0 * n_forget)
        took = time.perf_counter() - start
        f1, r1 = test_scores(model, data)
        ok = f1 <= 5 and r0 - r1 <= 3
        clean += ok
        row = {"digit": digit, "df": round(f1, 1), "dr": round(r1, 1), "drop": round(r0 - r1, 1), "clean": ok,
               "alpha": info.get("chosen_alpha"), "scope": info.get("chosen_scope"), "steps": info.get("n_steps"),
               "trials": info.get("n_trials"), "kept": info.get("forget_kept"), "changed": info.get("retain_changed"),
               "params": info.get("parameters_changed"), "cost": (info.get("work") or {}).get("cost_ratio"), "time": round(took, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"SUMMARY {args.tag} size={args.size} variant={args.variant} fixed={args.fixed} settings={args.settings} "
          f"extra={args.extra}: clean {clean}/{len(rows)}", flush=True)


if __name__ == "__main__":
    main()
