"""Section ``autocast``: how much bf16 autocast changes SSD's selection on a trained digits model."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.splits import FullClassTask
from unlearning.models.resnet import build_resnet18


def bench_autocast(checkpoint: Path, device: torch.device, forget: str, alphas: list[float], out: dict) -> None:
    """How much bf16 autocast changes SSD's selection, on a trained digits model and the real data."""
    from unlearning.data.digits import build_digits
    from unlearning.evaluation.metrics import accuracy
    from unlearning.evaluation.predictions import predict
    from unlearning.methods.ssd import dampen, importances
    from unlearning.models.checkpoints import load_checkpoint, load_into

    state, metadata = load_checkpoint(checkpoint)
    if metadata.get("dataset") != "digits" or metadata.get("model") != "resnet18":
        raise SystemExit("--autocast-checkpoint needs a digits ResNet18 folder made by train.py")
    data = UnlearningDataModule(build_digits, FullClassTask(forget), labels=metadata["label_kind"],
                                image_size=metadata.get("image_size"), eval_batch_size=512)
    data.setup()
    model = load_into(build_resnet18(data.num_classes, data.channels), state, checkpoint).to(device)
    runs: dict[str, dict[str, Any]] = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        start = time.perf_counter()
        full = importances(model, data.loader("full", batch_size=64), autocast_dtype=dtype)
        forget_imp = importances(model, data.loader("forget", batch_size=64), autocast_dtype=dtype)
        runs[name] = {"full": full, "forget": forget_imp, "seconds": time.perf_counter() - start}
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "forget": data.split.description,
                              "fp32_s": runs["fp32"]["seconds"], "bf16_s": runs["bf16"]["seconds"], "alphas": {}}
    for alpha in alphas:
        chosen = {name: {k: run["forget"][k] > alpha * run["full"][k] for k in run["full"]}
                  for name, run in runs.items()}
        both = sum(int((chosen["fp32"][k] & chosen["bf16"][k]).sum()) for k in chosen["fp32"])
        either = sum(int((chosen["fp32"][k] | chosen["bf16"][k]).sum()) for k in chosen["fp32"])
        row: dict[str, Any] = {
            "selected_fp32": sum(int(v.sum()) for v in chosen["fp32"].values()),
            "selected_bf16": sum(int(v.sum()) for v in chosen["bf16"].values()),
            "jaccard": both / either if either else 1.0,
        }
        for name, run in runs.items():
            dampened = copy.deepcopy(model)
            dampen(dampened, run["full"], run["forget"], alpha, 1.0)
            for split in ("retain_test", "forget_test"):
                logits, labels = predict(dampened, data.loader(split))
                row[f"{name}_{split}_acc"] = accuracy(logits, labels)
        result["alphas"][str(alpha)] = row
    out["autocast"] = result
