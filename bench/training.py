"""Training as fast as the hardware allows: ``train.py``'s own path against a bare loop on the same images.

The bare loop is the limit: the same model, optimiser (SGD with momentum and weight decay, as
the recipe), batch size and augmented batches, made *before* the clock starts, then forward,
loss, backward and step, nothing else. The real path is ``unlearning.jobs.train.train`` as
``python train.py`` runs it: data module, Lightning Trainer, logging, the validation passes
(after every epoch, or every ``validate_every`` epochs: part of what a user waits for). The bare loop runs before and after the real path
and their mean is the denominator, so that a machine shared with other work moves both sides.

A short run is at the mercy of the machine: three interleaved (bare loop, train.py) pairs of 6 digits
epochs on this 2-core machine read 0.876, 1.108 and 0.756 (the bare loop alone 13.9-19.0 s), while a
profile of ``train()`` found under 0.5 s of its 22 s outside torch's kernels. So a setting can be
measured several times, alternating bare loop and train.py, and the median pair is reported
(:data:`REPEATS`; every pair's ratio is kept).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.compose import compose
from bench.timing import note, ratio

#: The settings measured: (name, train.py overrides). Epochs are few: the ratio is per epoch.
#: ``fashion_mnist`` is the benchmark's default cadence (validation after every 4th epoch and the last:
#: in a 3-epoch run, once, so more validation per epoch than the 12-epoch recipe's three); the
#: ``..._every_epoch`` row validates its 2,000 images after every epoch, as the recipe bench needs.
SETTINGS = {
    "digits": ["dataset=digits"],
    "fashion_mnist": ["dataset=fashion_mnist"],
    "fashion_mnist_every_epoch": ["dataset=fashion_mnist", "dataset.training.validate_every=1"],
}

#: (bare loop, train.py) pairs per setting, alternating, the median reported; 1 where not named. Digits'
#: 3-epoch run is about 10 s, short enough for the machine's noise to move one ratio by 0.2, so 5 pairs;
#: a Fashion-MNIST run is 100 s, yet two single runs of it on this shared machine read 0.984 and 0.944,
#: so 3 pairs (about 10 minutes a setting).
REPEATS = {"digits": 5, "fashion_mnist": 3, "fashion_mnist_every_epoch": 3}

#: Rows that say where the gap to the bare loop goes, run only when named (``--train-settings``): the
#: same runs without the recipe's exact batch-norm statistics (``precise_bn=0``). That step is one
#: forward pass over up to 2,000 un-augmented training images after the last epoch, about as much as one
#: validation pass; a 3-epoch bench run weighs it 4 times as heavily as the 12-epoch Fashion-MNIST recipe.
ATTRIBUTION = {f"{name}_no_precise_bn": [*SETTINGS[name], "dataset.training.precise_bn=0"]
               for name in ("digits", "fashion_mnist")}
REPEATS.update({f"{name}_no_precise_bn": REPEATS[name] for name in ("digits", "fashion_mnist")})


def chosen_settings(names: str | None) -> dict[str, list[str]]:
    """The settings named in ``names`` (comma-separated, from SETTINGS and ATTRIBUTION); SETTINGS when None."""
    if names is None:
        return dict(SETTINGS)
    known = {**SETTINGS, **ATTRIBUTION}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise SystemExit(f"--train-settings: unknown or no setting {unknown or names!r}; "
                         f"known: {', '.join(known)}")
    return {name: known[name] for name in wanted}


def bare_loop(cfg, data, epochs: int, device: torch.device) -> float:
    """Seconds of ``epochs`` epochs of forward, backward and SGD step over ready, augmented batches."""
    from unlearning.jobs.builders import build_model
    from unlearning.jobs.train import checked_schedule
    from unlearning.optim import build_optimizer

    schedule = checked_schedule(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data.num_classes, data.channels).to(device).train()
    optimizer = build_optimizer("sgd", model.parameters(), schedule["lr"], schedule.get("momentum", 0.9),
                                schedule.get("weight_decay", 5e-4))
    batch_size = int(schedule.get("batch_size", data.batch_size))
    batches = [(x.to(device), y.to(device)) for _ in range(epochs)
               for x, y in data.loader("full", augment=True, shuffle=True, batch_size=batch_size)]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def configured(overrides: list[str], root: Path, epochs: int, device: torch.device):
    """train.py's config for one measured run, its model registry under ``root``."""
    return compose("train", [*overrides, f"paths.root_dir={root}", "logger=none", "trainer.enable_progress_bar=false",
                             f"dataset.training.epochs={epochs}",
                             f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}"])


def bench_training(device: torch.device, out: dict[str, Any], epochs: int = 3,
                   settings: dict[str, list[str]] | None = None, repeats: dict[str, int] | None = None) -> None:
    """``out["training"][name]``: train.py's fit time (validation included) and the bare loop's, and their ratio.

    With ``repeats[name]`` = k > 1 the bare loop and train.py alternate (bare, train, bare, ..., train,
    bare), each train.py run between two bare loops gives a ratio, and the pair with the median ratio is
    reported, all ratios beside it (``ratios``).
    """
    from unlearning.jobs.builders import build_datamodule
    from unlearning.jobs.train import train

    repeats = REPEATS if repeats is None else repeats
    results = out.setdefault("training", {})
    for name, overrides in (settings or SETTINGS).items():
        count = max(1, int(repeats.get(name, 1)))
        pairs = []
        with tempfile.TemporaryDirectory() as scratch:
            cfg = configured(overrides, Path(scratch) / "data", epochs, device)
            data = build_datamodule(cfg, None)
            data.setup()
            note(f"training/{name}: bare loop, {epochs} epochs of {len(data.indices('full'))} images")
            before = bare_loop(cfg, data, epochs, device)
            for repeat in range(count):
                note(f"training/{name}: train.py's path" + (f" ({repeat + 1} of {count})" if count > 1 else ""))
                root = Path(scratch) / f"repeat-{repeat}"  # a fresh registry: train.py keeps a model it finds
                published = train(configured(overrides, root, epochs, device), output_dir=root / "run")
                metadata = json.loads((published / "metadata.json").read_text())
                note(f"training/{name}: bare loop again")
                after = bare_loop(cfg, data, epochs, device)
                pairs.append((ratio((before + after) / 2, metadata["train_time_s"]), before, after, metadata))
                before = after
        ratios = [pair[0] for pair in pairs]
        _, before, after, metadata = sorted(pairs, key=lambda pair: pair[0])[len(pairs) // 2]
        bare = (before + after) / 2
        images = epochs * int(metadata["n_train"])
        results[name] = {
            "overrides": overrides, "epochs": epochs, "n_train": metadata["n_train"], "n_val": metadata["n_val"],
            "validations": sum(point is not None for point in metadata["val_acc_per_epoch"]),
            "image_size": metadata["image_size"], "train_py_s": metadata["train_time_s"],
            "bare_s": bare, "bare_before_s": before, "bare_after_s": after,
            "training_vs_bare": ratio(bare, metadata["train_time_s"]),
            "train_py_images_per_s": images / metadata["train_time_s"], "bare_images_per_s": images / bare,
            "repeats": len(pairs), "ratios": ratios, "ratio_low": min(ratios), "ratio_high": max(ratios),
        }
