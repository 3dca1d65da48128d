"""Sections ``ssd`` and ``grid``: SSD's importance pass and dampening against a bare forward+backward
loop over D and Df, and a 3x3 alpha x lambda grid with the importance cache against one run."""

from __future__ import annotations

import copy
import math
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.timing import Clock, note, ratio
from bench.workload import Workload, context, workload_data
from unlearning.cache import TensorCache
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.fingerprint import weights_digest
from unlearning.methods.ssd import SSD, FixedAlpha, ShardedBatchSampler
from unlearning.models.resnet import build_resnet18


def bare_forward_backward(model: nn.Module, data: UnlearningDataModule, batch_size: int, device) -> None:
    """The limit: forward, loss and backward of every batch SSD uses, nothing else."""
    model.eval()
    for split in ("full", "forget"):
        loader = data.loader(split, batch_sampler=ShardedBatchSampler(len(data.indices(split)), batch_size))
        for images, labels in loader:
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True))
            loss.backward()
    model.zero_grad(set_to_none=True)


def bench_ssd_and_grid(w: Workload, device: torch.device, sections: set[str], out: dict) -> None:
    data, clock = workload_data(w, device), Clock(device)
    torch.manual_seed(w.seed)
    original = build_resnet18(w.classes, w.channels).to(device)
    n_images = len(data.indices("full")) + len(data.indices("forget"))
    times: dict[str, float] = {}
    warm = copy.deepcopy(original)  # one untimed batch: allocator and kernels warmed up for both loops
    images, labels = next(iter(data.loader("forget", batch_size=w.batch_size)))
    F.cross_entropy(warm(images.to(device)), labels.to(device)).backward()
    del warm
    note(f"bare forward+backward loop over D and Df ({n_images} images)")
    with clock(times, "bare_fwd_bwd"):
        bare_forward_backward(copy.deepcopy(original), data, w.batch_size, device)
    note(f"bare loop {times['bare_fwd_bwd_s']:.1f} s; SSD runs next")
    with tempfile.TemporaryDirectory(prefix="unlearning-bench-") as directory:
        cache = TensorCache(directory)
        grid = [(alpha, lambda_) for alpha in (5.0, 10.0, 20.0) for lambda_ in (0.5, 1.0, 2.0)]
        points: list[dict[str, Any]] = []
        with clock(times, "grid"):
            for alpha, lambda_ in grid:
                point: dict[str, Any] = {"alpha": alpha, "lambda": lambda_}
                with clock(point, "run"):
                    model = copy.deepcopy(original)  # every run starts from the trained weights
                    info = SSD(FixedAlpha(alpha, lambda_), batch_size=w.batch_size).unlearn(
                        model, data, context(original, device, cache))
                point.update(importance_cache=info["importance_cache"], fraction_changed=info["fraction_changed"],
                             importance_s=info["importance_full_time_s"] + info["importance_forget_time_s"])
                points.append(point)
                note(f"SSD alpha={alpha} lambda={lambda_}: {point['run_s']:.1f} s ({info['importance_cache']})")
                if "grid" not in sections:
                    break
        stats = cache.stats.as_dict()
        fresh = TensorCache(directory)  # another process, same files
        start = time.perf_counter()
        for split in ("full", "forget"):
            assert fresh.get(_importance_parts_for(original, data, split, w.batch_size)) is not None
        disk_load_s = time.perf_counter() - start
    first = points[0]
    out["ssd"] = {
        "images": n_images, "batches": math.ceil(len(data.indices("full")) / w.batch_size)
        + math.ceil(len(data.indices("forget")) / w.batch_size),
        "bare_fwd_bwd_s": times["bare_fwd_bwd_s"], "bare_fwd_bwd_cpu_s": times["bare_fwd_bwd_cpu_s"],
        "ssd_s": first["run_s"], "ssd_cpu_s": first["run_cpu_s"], "importance_pass_s": first["importance_s"],
        "ssd_vs_bare": ratio(first["run_s"], times["bare_fwd_bwd_s"]),
        "ssd_vs_bare_cpu": ratio(first["run_cpu_s"], times["bare_fwd_bwd_cpu_s"]),
        "importance_images_per_s": n_images / first["importance_s"],
        "bare_images_per_s": n_images / times["bare_fwd_bwd_s"],
        "cache_write_s": stats["write_s"], "cache_entry_mb": _entry_mb(original),
        "cache_disk_load_both_s": disk_load_s,
    }
    if "grid" in sections:
        out["grid"] = {
            "points": points, "grid_s": times["grid_s"], "grid_cpu_s": times["grid_cpu_s"],
            "grid_vs_one": ratio(times["grid_s"], first["run_s"]),
            "grid_vs_one_cpu": ratio(times["grid_cpu_s"], first["run_cpu_s"]),
            "cached_run_mean_s": float(np.mean([p["run_s"] for p in points[1:]])),
            "importance_passes": sum(v == "computed" for p in points for v in p["importance_cache"].values()),
        }


def _importance_parts_for(model: nn.Module, data, split: str, batch_size: int) -> dict[str, Any]:
    from unlearning.methods.ssd import importance_parts

    return importance_parts(weights_digest(model), data, split, "ssd", batch_size)


def _entry_mb(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20
