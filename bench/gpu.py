"""``python -m bench.gpu``: the prepared GPU check (issue: training at the speed limit), one command.

Measures on synthetic CIFAR-shaped data (3x32x32, 10 classes whose images differ by a mean
pattern, so a model learns something; no download on a lent machine):

1. **training**: ``train.py``'s own path (data module with the images on the GPU and augmentation
   there, Lightning Trainer with ``bf16-mixed`` precision, ``channels_last``, validation after
   every epoch) against a bare loop (same model, optimiser, autocast and layout, ready batches on
   the GPU); goal: bare / real >= 0.8 at batch 512;
2. **SSD's importance pass** against a bare forward+backward loop over the same batches
   (``bench.importance``); goal: bare / SSD >= 0.9;
3. **bf16's agreement with float32** on the parameters SSD selects (alpha 10, a model trained
   in step 1's way for a few epochs): Jaccard of the two selections; goal >= 0.97.

Results go to ``bench/results.json`` under ``gpu:<card name>`` (``--device cpu --quick`` runs the
same code on tiny sizes, to check the script itself where no GPU is lent).

    python -m bench.gpu                   # on the GPU machine, about 5 minutes
    python -m bench.gpu --device cpu --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.report import RESULTS, machine
from bench.timing import note, ratio
from bench.workload import Workload
from unlearning.data.bundle import ArrayImages, DatasetBundle
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.splits import FullClassTask

GOALS = {"training_bare_vs_real": 0.8, "importance_bare_vs_ssd": 0.9, "bf16_jaccard": 0.97}


def learnable_bundle(n: int, n_test: int, size: int = 32, classes: int = 10, seed: int = 0) -> DatasetBundle:
    """Images = the class's mean pattern + noise (uint8), balanced labels: a task a ResNet learns in an epoch."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(40, 216, (classes, size, size, 3))

    def images(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count, dtype=np.int64) % classes
        noise = rng.normal(0, 48, (count, size, size, 3))
        return np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8), labels

    train, train_labels = images(n)
    test, test_labels = images(n_test)
    return DatasetBundle(name="synthetic-cifar", train_images=ArrayImages(train), test_images=ArrayImages(test),
                         train_fine=train_labels, test_fine=test_labels, fine_names=[f"c{i}" for i in range(classes)],
                         channels=3, native_size=size, mean=(0.5,) * 3, std=(0.25,) * 3)


def data_module(bundle: DatasetBundle, device: torch.device, batch_size: int) -> UnlearningDataModule:
    data = UnlearningDataModule(builder=lambda: bundle, task=FullClassTask("c0"), batch_size=batch_size,
                                eval_batch_size=1024, augment={"crop_padding": 4, "hflip": True},
                                split={"validation": 0.05}, device="cuda" if device.type == "cuda" else None)
    data.setup()
    return data


def bare_training(data: UnlearningDataModule, epochs: int, device: torch.device, bf16: bool) -> float:
    """Seconds of forward, backward and fused SGD step over ready, augmented, channels-last batches."""
    from unlearning.models.resnet import build_resnet18
    from unlearning.optim import build_optimizer

    torch.manual_seed(0)
    model = build_resnet18(data.num_classes, 3).to(device).to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer("sgd", model.parameters(), 0.1, 0.9, 5e-4)
    batches = [(x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)) for _ in range(epochs)
               for x, y in data.loader("full", augment=True, shuffle=True)]
    _sync(device)
    start = time.perf_counter()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def real_training(data: UnlearningDataModule, epochs: int, device: torch.device, bf16: bool):
    """train.py's objects (ImageClassifier, Lightning Trainer, validation each epoch); returns (seconds, model)."""
    import lightning as L

    from unlearning.models.classifier import ValidationCurve, classifier_for_schedule
    from unlearning.models.resnet import build_resnet18

    schedule = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "warmup_epochs": 1, "schedule": "cosine",
                "channels_last": True}
    torch.manual_seed(0)
    module = classifier_for_schedule(build_resnet18(data.num_classes, 3), data.num_classes, schedule, epochs)
    curve = ValidationCurve()
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=epochs,
                        precision="bf16-mixed" if bf16 else "32-true", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[curve])
    _sync(device)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    _sync(device)
    return time.perf_counter() - start, module.model, curve.curve


def jaccard_bf16(model: torch.nn.Module, data: UnlearningDataModule, device: torch.device,
                 alpha: float = 10.0) -> dict[str, Any]:
    """SSD's selection at ``alpha`` from float32 and from bf16-autocast importances: their Jaccard index."""
    from unlearning.methods.ssd import importances

    model = copy.deepcopy(model).to(device)
    chosen = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        full = importances(model, data.loader("full", batch_size=64), autocast_dtype=dtype)
        forget = importances(model, data.loader("forget", batch_size=64), autocast_dtype=dtype)
        chosen[name] = {k: forget[k] > alpha * full[k] for k in full}
    both = sum(int((chosen["fp32"][k] & chosen["bf16"][k]).sum()) for k in chosen["fp32"])
    either = sum(int((chosen["fp32"][k] | chosen["bf16"][k]).sum()) for k in chosen["fp32"])
    return {"alpha": alpha, "selected_fp32": sum(int(v.sum()) for v in chosen["fp32"].values()),
            "selected_bf16": sum(int(v.sum()) for v in chosen["bf16"].values()),
            "jaccard": both / either if either else 1.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script, not the machine")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to PyTorch (use --device cpu --quick to check the script)")
    device = torch.device(args.device)
    n, n_test, batch, epochs = (640, 128, 64, 1) if args.quick else (25_000, 2_000, 512, 3)
    bf16 = True
    out: dict[str, Any] = {"machine": machine(device), "goals": GOALS, "quick": args.quick,
                           "settings": {"images": n, "image_size": 32, "batch_size": batch, "epochs": epochs,
                                        "precision": "bf16-mixed", "channels_last": True}}
    data = data_module(learnable_bundle(n, n_test), device, batch)
    note(f"training: bare loop, {epochs} epochs of {len(data.indices('full'))} images, batch {batch}")
    bare_training(data, 1, device, bf16)  # warm-up: kernels chosen, allocator filled
    before = bare_training(data, epochs, device, bf16)
    note("training: train.py's path")
    real, model, curve = real_training(data, epochs, device, bf16)
    after = bare_training(data, epochs, device, bf16)
    bare = (before + after) / 2
    out["training"] = {"bare_s": bare, "real_s": real, "bare_vs_real": ratio(bare, real), "val_acc_per_epoch": curve,
                       "images_per_s_real": epochs * len(data.indices("full")) / real}
    note("SSD importance pass against the bare forward+backward loop")
    from bench.importance import bench_ssd_and_grid

    workload = Workload(n_full=min(n, 5000), n_test=500)
    ssd: dict[str, Any] = {}
    bench_ssd_and_grid(workload, device, {"ssd"}, ssd)
    out["importance"] = {**ssd.get("ssd", {}), "bare_vs_ssd": 1 / ssd["ssd"]["ssd_vs_bare"],
                         "workload": asdict(workload)}
    note("bf16 against float32: SSD's selection")
    out["bf16"] = jaccard_bf16(model, data, device)
    out["verdicts"] = {"training": out["training"]["bare_vs_real"] >= GOALS["training_bare_vs_real"],
                       "importance": out["importance"]["bare_vs_ssd"] >= GOALS["importance_bare_vs_ssd"],
                       "bf16": out["bf16"]["jaccard"] >= GOALS["bf16_jaccard"]}
    print(json.dumps({k: out[k] for k in ("training", "bf16", "verdicts")}, indent=1, default=str))
    print(f"importance bare/SSD {out['importance']['bare_vs_ssd']:.3f}")
    if not args.quick:
        results = json.loads(args.output.read_text()) if args.output.is_file() else {}
        results[f"gpu:{out['machine'].get('gpu', args.device)}"] = out
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"written to {args.output}")
    return out


if __name__ == "__main__":
    main()
