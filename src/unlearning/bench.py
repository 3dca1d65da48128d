"""``make bench``: how close SSD, sweeps and evaluation come to the physical limit (a benchmark, not a test).

A fixed workload (ResNet18 on 3x32x32 inputs, D of 5,000 generated samples, Df = one of
10 classes = 10% of D, batch 64) is timed in one process and every figure is reported as
a ratio to a bare loop over the same batches, measured moments before on the same machine:

* SSD unlearning (importances of D and Df plus dampening, run as ``method=ssd`` runs it,
  through a Lightning Trainer, with an empty cache) / a bare forward+backward loop over
  D and Df; goal <= 1.10;
* a 3x3 alpha x lambda grid with the cache (the first point finds it empty) / one SSD run
  with an empty cache; goal <= 1.5;
* evaluation / one bare forward pass over the evaluated splits (D and the test set):
  one model with all metrics, and a sweep run's whole evaluation stage (random teacher and
  original model from the cache, the unlearned model computed); goal <= 1.2;
* SSD / a 2-epoch retrain on Dr (the cheapest baseline that forgets for sure);
* peak memory of SSD on a ViT at 224 px with D of 2,000 and 20,000 samples (each in a
  fresh process): it must not grow with D;
* importance-pass throughput in images per second.

Wall-clock ratios are the headline; process CPU-time ratios are recorded beside them
because they move less when other jobs share the machine. Results go to
``bench/results.json`` under the device's name, with the machine's description.

    python -m unlearning.bench                       # CPU, about 15 min on 2 cores
    python -m unlearning.bench --device cuda         # on a GPU
    python -m unlearning.bench --sections ssd,grid --n-full 1000   # a quick look
    python -m unlearning.bench --sections autocast --autocast-checkpoint checkpoints/digits-fine-resnet18-32px-seed0
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearning.cache import TensorCache
from unlearning.data.bundle import ArrayImages, DatasetBundle, ImageSource
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.splits import FullClassTask
from unlearning.evaluation.evaluate import (
    EvaluationSettings,
    compare_with_reference,
    evaluate,
    evaluate_recurring,
    metrics_of,
    model_outputs,
    teacher_logits,
)
from unlearning.fingerprint import weights_digest
from unlearning.methods.base import MethodContext
from unlearning.methods.ssd_callback import ShardedBatchSampler
from unlearning.methods.ssd_method import SSD
from unlearning.models.classifier import ImageClassifier
from unlearning.models.resnet import build_resnet18

SECTIONS = ("ssd", "grid", "evaluation", "retrain", "vit_memory", "autocast")
DEFAULT_SECTIONS = ("ssd", "grid", "evaluation", "retrain", "vit_memory")
GOALS = {"ssd_vs_bare": 1.10, "grid_vs_one": 1.5, "evaluation_vs_forward": 1.2, "sweep_evaluation_vs_forward": 1.2,
         "gold_vs_paper_evaluation": 1.5}
RESULTS = Path("bench/results.json")


# ----------------------------------------------------------------------------- workload
@dataclass
class Workload:
    n_full: int = 5000
    n_test: int = 1000
    classes: int = 10
    image_size: int = 32
    channels: int = 3
    batch_size: int = 64
    eval_batch_size: int = 512
    seed: int = 0


class GeneratedImages(ImageSource):
    """Image ``i`` drawn from a generator seeded with ``(seed, i)`` on access: nothing is held in memory."""

    def __init__(self, n: int, size: int, channels: int, seed: int):
        self.n, self.size, self.channels, self.seed = n, size, channels, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        from PIL import Image

        pixels = np.random.default_rng([self.seed, int(index)]).integers(0, 256, (self.size, self.size, self.channels),
                                                                       dtype=np.uint8)
        return Image.fromarray(pixels)

    def fingerprint(self) -> str:
        return f"generated:{self.n}:{self.size}:{self.channels}:{self.seed}"


def generated_bundle(w: Workload, lazy: bool = False) -> DatasetBundle:
    """Random images with balanced labels (``i % classes``): forgetting class 0 forgets 1/classes of D."""
    def images(n: int, seed: int) -> ImageSource:
        if lazy:
            return GeneratedImages(n, w.image_size, w.channels, seed)
        rng = np.random.default_rng(seed)
        return ArrayImages(rng.integers(0, 256, (n, w.image_size, w.image_size, w.channels), dtype=np.uint8))

    return DatasetBundle(
        name="generated", train_images=images(w.n_full, w.seed), test_images=images(w.n_test, w.seed + 1),
        train_fine=np.arange(w.n_full, dtype=np.int64) % w.classes,
        test_fine=np.arange(w.n_test, dtype=np.int64) % w.classes,
        fine_names=[f"c{i}" for i in range(w.classes)], channels=w.channels, native_size=w.image_size,
        mean=(0.5,) * w.channels, std=(0.25,) * w.channels,
    )


def workload_data(w: Workload, device: torch.device, lazy: bool = False, image_size: int | None = None,
                  ) -> UnlearningDataModule:
    bundle = generated_bundle(w, lazy)
    gpu = device.type == "cuda"
    data = UnlearningDataModule(
        builder=lambda: bundle, task=FullClassTask("c0"), image_size=image_size,
        batch_size=w.batch_size, eval_batch_size=w.eval_batch_size,
        # 2 shared cores: loading in the main process is fastest; a GPU needs workers and pinned memory
        num_workers=min(8, os.cpu_count() or 1) if gpu else 0, pin_memory=gpu,
    )
    data.setup()
    return data


# ----------------------------------------------------------------------------- timing
class Clock:
    """Wall and process-CPU seconds of a block; synchronises the GPU at both ends."""

    def __init__(self, device: torch.device):
        self.device = device

    @contextlib.contextmanager
    def __call__(self, into: dict[str, float], name: str) -> Iterator[None]:
        self._sync()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self._sync()
        into[f"{name}_s"] = time.perf_counter() - wall
        into[f"{name}_cpu_s"] = time.process_time() - cpu

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def trainer_factory(device: torch.device) -> Callable[..., L.Trainer]:
    accelerator = "gpu" if device.type == "cuda" else "cpu"

    def make(**overrides: Any) -> L.Trainer:
        options = dict(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, precision="32-true")
        options.update(overrides)
        return L.Trainer(**options)

    return make


def context(model: nn.Module, device: torch.device, cache: TensorCache | None, fresh=None) -> MethodContext:
    return MethodContext(make_trainer=trainer_factory(device), fresh_model=fresh or (lambda: model),
                         original=model, task="fullclass", cache=cache)


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


@torch.no_grad()
def bare_forward(model: nn.Module, data: UnlearningDataModule, device) -> None:
    """The limit of evaluation: one forward pass over D and one over the test set, outputs dropped."""
    model.eval()
    for split in ("full", "test"):
        for images, _ in data.loader(split):
            model(images.to(device, non_blocking=True))


def note(message: str) -> None:
    """Progress on stderr: a CPU run takes a while."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# ----------------------------------------------------------------------------- sections
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
                    info = SSD(alpha=alpha, lambda_=lambda_, batch_size=w.batch_size).unlearn(
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
    from unlearning.methods.ssd_callback import importance_parts

    return importance_parts(weights_digest(model), data, split, "ssd", batch_size)


def _entry_mb(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20


def bench_evaluation(w: Workload, device: torch.device, out: dict) -> None:
    data, clock = workload_data(w, device), Clock(device)
    torch.manual_seed(w.seed)
    original = build_resnet18(w.classes, w.channels).to(device).eval()
    unlearned = copy.deepcopy(original)
    with torch.no_grad():
        unlearned.fc.weight.mul_(0.5)  # another model, as after unlearning
    teacher_model = build_resnet18(w.classes, w.channels).to(device)
    times: dict[str, float] = {}
    bare_forward(original, data, device)  # untimed: warm-up (first-touch costs hit whichever pass comes first)
    with clock(times, "bare_forward"):
        bare_forward(original, data, device)
    note(f"evaluation: bare forward {times['bare_forward_s']:.1f} s")
    with tempfile.TemporaryDirectory(prefix="unlearning-bench-") as directory:
        cache = TensorCache(directory)
        random_logits = teacher_logits(teacher_model, data, cache)
        with clock(times, "evaluate_one_model"):  # all metrics of one model (the original; fills the cache)
            evaluate(original, data, random_logits, cache)
        def stage(settings, reference=None):  # one sweep run's evaluation stage, as unlearn.py runs it
            teacher_logits(teacher_model, data, cache)
            original_out, original_m = evaluate_recurring(original, data, random_logits, settings, cache)
            unlearned_out = model_outputs(unlearned, data, features=settings.probe)
            unlearned_m = metrics_of(unlearned_out, data, random_logits, settings)
            if reference is not None:
                reference_out, reference_m = evaluate_recurring(reference, data, random_logits, settings, cache)
                compare_with_reference((unlearned_out, unlearned_m), (original_out, original_m),
                                       (reference_out, reference_m), data)

        everything, paper_only = EvaluationSettings(), EvaluationSettings(strong_mia=False, probe=False)
        reference = copy.deepcopy(original)
        with torch.no_grad():
            reference.fc.weight.mul_(-1.0)  # a third model: the retrained reference, published earlier
        for settings in (everything, paper_only):  # untimed: the sweep's first run, which fills the cache
            stage(settings, reference)
        with clock(times, "sweep_evaluation_stage"):  # what unlearn.py does in every later run of a sweep
            stage(everything)
        # The gold-standard evaluation against the paper's metrics alone (issue: within 1.5x).
        with clock(times, "paper_metrics_stage"):
            stage(paper_only)
        with clock(times, "gold_standard_stage"):
            stage(everything, reference)
    out["evaluation"] = {
        "images": len(data.indices("full")) + len(data.indices("test")), **times,
        "evaluation_vs_forward": ratio(times["evaluate_one_model_s"], times["bare_forward_s"]),
        "evaluation_vs_forward_cpu": ratio(times["evaluate_one_model_cpu_s"], times["bare_forward_cpu_s"]),
        "sweep_evaluation_vs_forward": ratio(times["sweep_evaluation_stage_s"], times["bare_forward_s"]),
        "sweep_evaluation_vs_forward_cpu": ratio(times["sweep_evaluation_stage_cpu_s"], times["bare_forward_cpu_s"]),
        "gold_vs_paper_evaluation": ratio(times["gold_standard_stage_s"], times["paper_metrics_stage_s"]),
        "gold_vs_paper_evaluation_cpu": ratio(times["gold_standard_stage_cpu_s"], times["paper_metrics_stage_cpu_s"]),
    }


def bench_retrain(w: Workload, device: torch.device, out: dict) -> None:
    """A fixed 2-epoch retrain on Dr with the training recipe (SGD, augmentation): SSD's cheapest rival."""
    data, clock = workload_data(w, device), Clock(device)
    torch.manual_seed(w.seed)
    module = ImageClassifier(build_resnet18(w.classes, w.channels), num_classes=w.classes, lr=0.1)
    trainer = trainer_factory(device)(max_epochs=2, enable_checkpointing=False, limit_val_batches=0,
                                      num_sanity_val_steps=0)
    times: dict[str, float] = {}
    note("retrain: 2 epochs on Dr")
    with clock(times, "retrain_2_epochs"):
        trainer.fit(module, train_dataloaders=data.loader("retain", augment=True, shuffle=True,
                                                          batch_size=w.batch_size))
    out["retrain"] = {"epochs": 2, "images": 2 * len(data.indices("retain")), **times}
    if "ssd" in out:
        out["retrain"]["ssd_vs_retrain"] = ratio(out["ssd"]["ssd_s"], times["retrain_2_epochs_s"])
        out["retrain"]["ssd_vs_retrain_cpu"] = ratio(out["ssd"]["ssd_cpu_s"], times["retrain_2_epochs_cpu_s"])


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
    info = SSD(alpha=5.0, batch_size=w.batch_size, cache=False).unlearn(model, data, context(model, device, None))
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
        command = [sys.executable, "-m", "unlearning.bench", "--vit-child", str(n), "--device", device.type]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ViT memory run with D={n} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    key = "cuda_peak_mb" if device.type == "cuda" else "rss_growth_mb"
    out["vit_memory"] = {"model": {**VIT_CONFIG, "image_size": 224}, "runs": runs, "measure": key,
                         "peak_growth_large_vs_small": ratio(runs[-1][key], runs[0][key])}


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


# ----------------------------------------------------------------------------- report
def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"device": device.type, "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                            check=True).stdout.strip()
    return info


def rows(out: dict) -> list[tuple[str, str, str, str]]:
    """(measure, ratio, goal, detail) for the table."""
    table = []

    def add(name, value, goal, detail):
        table.append((name, "-" if value is None or value != value else f"{value:.3f}",
                      f"<= {goal}" if goal else "", detail))

    if "ssd" in out:
        s = out["ssd"]
        add("SSD / bare fwd+bwd over D and Df", s["ssd_vs_bare"], GOALS["ssd_vs_bare"],
            f"{s['ssd_s']:.1f} s vs {s['bare_fwd_bwd_s']:.1f} s (CPU time ratio {s['ssd_vs_bare_cpu']:.3f})")
        add("importance pass, images/s", s["importance_images_per_s"], None,
            f"bare loop {s['bare_images_per_s']:.1f} images/s; {s['images']} images")
    if "grid" in out:
        g = out["grid"]
        add("3x3 alpha x lambda grid (cache) / one SSD run", g["grid_vs_one"], GOALS["grid_vs_one"],
            f"{g['grid_s']:.1f} s; {g['importance_passes']} importance passes; cached run {g['cached_run_mean_s']:.2f} s "
            f"(CPU {g['grid_vs_one_cpu']:.3f})")
    if "evaluation" in out:
        e = out["evaluation"]
        add("evaluate one model / bare forward (D + test)", e["evaluation_vs_forward"], GOALS["evaluation_vs_forward"],
            f"{e['evaluate_one_model_s']:.1f} s vs {e['bare_forward_s']:.1f} s (CPU {e['evaluation_vs_forward_cpu']:.3f})")
        add("sweep run's evaluation stage / bare forward", e["sweep_evaluation_vs_forward"],
            GOALS["sweep_evaluation_vs_forward"],
            f"{e['sweep_evaluation_stage_s']:.1f} s: teacher + original cached (CPU "
            f"{e['sweep_evaluation_vs_forward_cpu']:.3f})")
        if "gold_vs_paper_evaluation" in e:
            add("evaluation with reference, attack, probe / paper's metrics only", e["gold_vs_paper_evaluation"],
                GOALS["gold_vs_paper_evaluation"],
                f"{e['gold_standard_stage_s']:.1f} s vs {e['paper_metrics_stage_s']:.1f} s per sweep run; reference "
                f"published, its outputs cached (CPU {e['gold_vs_paper_evaluation_cpu']:.3f})")
    if "retrain" in out and "ssd_vs_retrain" in out["retrain"]:
        r = out["retrain"]
        add("SSD / 2-epoch retrain on Dr", r["ssd_vs_retrain"], None,
            f"retrain {r['retrain_2_epochs_s']:.1f} s (CPU {r['ssd_vs_retrain_cpu']:.3f})")
    if "vit_memory" in out:
        v = out["vit_memory"]
        runs = ", ".join(f"D={r['n_full']}: +{r[v['measure']]:.0f} MB (peak RSS {r['peak_rss_mb']:.0f} MB) in "
                         f"{r['ssd_s']:.0f} s" for r in v["runs"])
        add(f"ViT 224 px peak memory, large D / small D ({v['measure']})", v["peak_growth_large_vs_small"], None, runs)
    if "autocast" in out:
        a = out["autocast"]
        add("bf16 autocast importance pass: fp32 time / bf16 time", ratio(a["fp32_s"], a["bf16_s"]), None,
            f"{a['fp32_s']:.1f} s vs {a['bf16_s']:.1f} s for D and Df of {a['forget']} ({a['checkpoint']})")
        for alpha, row in a["alphas"].items():
            add(f"bf16 autocast: selection Jaccard vs fp32, alpha {alpha}", row["jaccard"], None,
                f"{row['selected_fp32']} vs {row['selected_bf16']} selected; Df-test acc "
                f"{row['fp32_forget_test_acc']:.1f}/{row['bf16_forget_test_acc']:.1f}, Dr-test "
                f"{row['fp32_retain_test_acc']:.1f}/{row['bf16_retain_test_acc']:.1f} (fp32/bf16)")
    return table


def print_table(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"unlearning bench ({out['machine']['device']}: {out['machine'].get('gpu') or out['machine']['cpu']})")
    for column in ("measure", "ratio", "goal", "detail"):
        table.add_column(column, justify="right" if column == "ratio" else "left")
    for row in rows(out):
        table.add_row(*row)
    Console(width=160).print(table)


def save(out: dict, path: Path, sections: set[str]) -> None:
    """Store ``out`` in ``path`` under the device's name (``cpu``, ``cuda``), beside other devices' results.

    A run of other sections than the default set is stored under ``<device>:<sections>``,
    so that a partial run never replaces a full one.
    """
    from unlearning.io import atomic_write_json

    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(path.read_text())
    key = out["machine"]["device"]
    if sections != set(DEFAULT_SECTIONS):
        key += ":" + "+".join(s for s in SECTIONS if s in sections)
    previous[key] = out
    atomic_write_json(path, previous)


# ----------------------------------------------------------------------------- entry
def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unlearning.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--n-full", type=int, default=Workload.n_full, help="D's size (the issue's minimum: 5000)")
    parser.add_argument("--n-test", type=int, default=Workload.n_test)
    parser.add_argument("--vit-sizes", default="2000,20000", help="D sizes of the ViT memory runs")
    parser.add_argument("--autocast-checkpoint", type=Path, help="a digits ResNet18 folder made by train.py")
    parser.add_argument("--autocast-forget", default="3")
    parser.add_argument("--autocast-alphas", default="10,50,100,500", help="selection weightings to compare at")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--vit-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse(argv)
    import warnings

    from unlearning.cli import quiet_library_warnings

    quiet_library_warnings()
    warnings.filterwarnings("ignore", message=r".*(num_workers|LitLogger|litlogger|val_dataloader).*")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to PyTorch")
    if args.vit_child:
        print(json.dumps(vit_memory_child(args.vit_child, args.device)))
        return None
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    if "autocast" in sections and not args.autocast_checkpoint:
        raise SystemExit("--sections autocast needs --autocast-checkpoint DIR (a digits ResNet18 made by train.py)")
    device = torch.device(args.device)
    w = Workload(n_full=args.n_full, n_test=args.n_test)
    out: dict[str, Any] = {"machine": machine(device), "workload": asdict(w), "goals": GOALS,
                           "started": datetime.now(UTC).isoformat(timespec="seconds")}
    start = time.perf_counter()
    if sections & {"ssd", "grid", "retrain"}:
        bench_ssd_and_grid(w, device, sections, out)
    if "evaluation" in sections:
        bench_evaluation(w, device, out)
    if "retrain" in sections:
        bench_retrain(w, device, out)
    if "vit_memory" in sections:
        bench_vit_memory([int(n) for n in args.vit_sizes.split(",")], device, out)
    if "autocast" in sections:
        bench_autocast(args.autocast_checkpoint, device, args.autocast_forget,
                       [float(a) for a in args.autocast_alphas.split(",")], out)
    out["total_s"] = time.perf_counter() - start
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    save(out, args.output, sections)
    print_table(out)
    print(f"total {out['total_s']:.0f} s; results: {args.output}")
    return out


if __name__ == "__main__":
    main()
