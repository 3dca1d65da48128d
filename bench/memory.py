"""Section ``vit_memory``: SSD's peak memory on a tiny ViT at 224 px, each D size in a fresh process."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from bench.timing import note, ratio
from bench.workload import Workload, context, workload_data
from unlearning.methods.ssd import SSD, FixedAlpha

ROOT = Path(__file__).resolve().parents[1]

VIT_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "patch_size": 16}


class RssSampler(threading.Thread):
    """Samples this process's resident memory every 10 ms; ``peak`` is the largest value seen.

    ``ru_maxrss`` cannot be reset and is dominated by import-time peaks, so the passes'
    own peak is sampled instead.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running, self.page = 0, True, os.sysconf("SC_PAGE_SIZE")

    def current(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.current())
            time.sleep(0.01)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.peak, self.current())


def vit_memory_child(n_full: int, device_name: str) -> dict[str, Any]:
    """In a fresh process: SSD on a tiny ViT at 224 px over D of ``n_full`` lazily generated images."""
    from unlearning.models.vit import build_vit

    device = torch.device(device_name)
    w = Workload(n_full=n_full, n_test=100)
    data = workload_data(w, device, lazy=True, image_size=224)
    torch.manual_seed(0)
    model = build_vit(w.classes, w.channels, config=VIT_CONFIG, image_size=224).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sampler = RssSampler()
    before = sampler.current()
    sampler.start()
    start = time.perf_counter()
    info = SSD(FixedAlpha(5.0), batch_size=w.batch_size, cache=False).unlearn(model, data, context(model, device, None))
    elapsed = time.perf_counter() - start
    peak = sampler.stop()
    result = {"n_full": n_full, "n_forget": len(data.indices("forget")), "ssd_s": elapsed,
              "peak_rss_mb": peak / 2**20, "rss_before_mb": before / 2**20,
              "rss_growth_mb": (peak - before) / 2**20,
              "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "parameters_changed": info["parameters_changed"]}
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def bench_vit_memory(sizes: list[int], device: torch.device, out: dict) -> None:
    runs = []
    for n in sizes:
        note(f"ViT memory run with D={n} (a fresh process)")
        command = [sys.executable, "-m", "bench", "--vit-child", str(n), "--device", device.type]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)  # bench/ is beside src/
        if done.returncode != 0:
            raise RuntimeError(f"ViT memory run with D={n} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    key = "cuda_peak_mb" if device.type == "cuda" else "rss_growth_mb"
    out["vit_memory"] = {"model": {**VIT_CONFIG, "image_size": 224}, "runs": runs, "measure": key,
                         "peak_growth_large_vs_small": ratio(runs[-1][key], runs[0][key])}
