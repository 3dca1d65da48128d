"""The tensor cache: SSD importances and the original model's logits reused across runs, never wrongly."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
from omegaconf import open_dict
from torch import nn

from tests.conftest import QUIET, compose_config
from unlearning.cache import TensorCache
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.digits import build_digits
from unlearning.data.splits import FullClassTask
from unlearning.evaluation.evaluate import evaluate, teacher_logits
from unlearning.jobs.builders import build_cache, build_model
from unlearning.jobs.unlearn import unlearn
from unlearning.methods.base import MethodContext
from unlearning.methods.ssd.callback import SSDCallback, importance_parts
from unlearning.methods.ssd.method import SSD
from unlearning.methods.ssd.policies import FixedAlpha, SearchedAlpha
from unlearning.models.checkpoints import save_checkpoint


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def digits_data(forget: str = "3") -> UnlearningDataModule:
    data = UnlearningDataModule(build_digits, FullClassTask(forget), eval_batch_size=512)
    data.setup()
    return data


def context(model: nn.Module, cache: TensorCache | None) -> MethodContext:
    trainer = lambda **kw: L.Trainer(accelerator="cpu", devices=1, logger=False,  # noqa: E731
                                     enable_progress_bar=False, enable_model_summary=False, **kw)
    return MethodContext(make_trainer=trainer, fresh_model=small_cnn, original=model, task="fullclass", cache=cache)


@pytest.fixture()
def count_passes(monkeypatch):
    """Counts the importance passes SSD runs (one per split computed, none per cache hit)."""
    calls: list[str] = []
    original = SSDCallback.importances_on_all_ranks

    def counted(self, trainer, model, split, batches=None):
        calls.append(split if batches is None else f"{split} by class")
        return original(self, trainer, model, split, batches)

    monkeypatch.setattr(SSDCallback, "importances_on_all_ranks", counted)
    return calls


def run_ssd(store, data, weights_seed=0, policy=None, **options) -> tuple[nn.Module, dict]:
    model = small_cnn(weights_seed)
    info = SSD(policy or FixedAlpha(1.0), **options).unlearn(model, data, context(model, store))
    return model, info


def entry(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.rand(64, 33, generator=generator), "b": torch.arange(7)}


PARTS = {"kind": "importance", "weights": "w", "split": "s", "batch_size": 64}


def test_hit_returns_identical_tensors_and_skips_computation(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or entry()  # noqa: E731
    cache = TensorCache(tmp_path)
    first = cache.get_or_compute(PARTS, compute)
    again = cache.get_or_compute(PARTS, compute)  # memory
    from_disk = TensorCache(tmp_path).get_or_compute(PARTS, compute)  # another process
    assert len(calls) == 1
    for value in (again, from_disk):
        assert value.keys() == first.keys()
        assert all(torch.equal(value[k], first[k]) and value[k].dtype == first[k].dtype for k in first)
    again["a.weight"].zero_()  # a caller's in-place change must not reach the cache
    assert torch.equal(cache.get(PARTS)["a.weight"], entry()["a.weight"])
    assert cache.stats.memory_hits == 2 and cache.stats.writes == 1


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "garbage", "other_inputs"])
def test_damaged_entries_are_ignored_and_recomputed(tmp_path, damage):
    cache = TensorCache(tmp_path)
    cache.put(PARTS, entry())
    path = cache.path(cache.key(PARTS))
    raw = path.read_bytes()
    if damage == "truncate":  # a copy cut short (the cache itself writes atomically)
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_bytes":  # bit rot inside the tensor data: still a valid safetensors file
        path.write_bytes(raw[:-10] + bytes(b ^ 0xFF for b in raw[-10:]))
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 5 + b"not a safetensors file")
    else:  # a valid entry for other inputs stored under this key's name
        other = dict(PARTS, batch_size=32)
        cache.put(other, entry(1))
        cache.path(cache.key(other)).replace(path)
    fresh = TensorCache(tmp_path)
    assert fresh.get(PARTS) is None and fresh.stats.rejected == 1
    calls = []
    value = fresh.get_or_compute(PARTS, lambda: calls.append(1) or entry())
    assert calls == [1] and torch.equal(value["a.weight"], entry()["a.weight"])
    assert torch.equal(TensorCache(tmp_path).get(PARTS)["a.weight"], entry()["a.weight"]), "rewritten intact"


def test_disk_limit_evicts_least_recently_used(tmp_path):
    size = 64 * 33 * 4 + 7 * 8
    cache = TensorCache(tmp_path, disk_bytes=int(2.5 * size) + 4096)
    for batch in (1, 2, 3):
        cache.put(dict(PARTS, batch_size=batch), entry(batch))
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert TensorCache(tmp_path).get(dict(PARTS, batch_size=1)) is None
    assert TensorCache(tmp_path).get(dict(PARTS, batch_size=3)) is not None


def test_alpha_lambda_sweep_computes_each_importance_once(tmp_path, count_passes):
    data, cache = digits_data(), TensorCache(tmp_path)
    reference = {}
    for alpha in (0.5, 2.0):
        for lambda_ in (0.5, 1.0):
            model, info = run_ssd(cache, data, policy=FixedAlpha(alpha, lambda_))
            reference[(alpha, lambda_)] = model
    assert sorted(count_passes) == ["forget", "full"], "one D and one Df pass for the whole grid"
    assert info["importance_cache"] == {"full": "hit", "forget": "hit"}
    uncached, _ = run_ssd(None, data, policy=FixedAlpha(2.0, 1.0))
    for name, value in uncached.state_dict().items():
        assert torch.equal(reference[(2.0, 1.0)].state_dict()[name], value), "a cached run equals an uncached one"


def test_changed_inputs_miss_and_d_ignores_the_forget_set(tmp_path, count_passes):
    data, cache = digits_data(), TensorCache(tmp_path)
    run_ssd(cache, data)
    assert sorted(count_passes) == ["forget", "full"]
    count_passes.clear()
    run_ssd(cache, data, batch_size=32)
    assert sorted(count_passes) == ["forget", "full"], "another batch size"
    count_passes.clear()
    run_ssd(cache, data, weights_seed=1)
    assert sorted(count_passes) == ["forget", "full"], "other weights"
    count_passes.clear()
    run_ssd(cache, data, variant="lfssd")
    assert sorted(count_passes) == ["forget", "full"], "another variant"
    count_passes.clear()
    _, info = run_ssd(cache, digits_data(forget="7"))
    assert count_passes == ["forget"], "another forget set: D's importance is reused, Df's is computed"
    assert info["importance_cache"] == {"full": "hit", "forget": "computed"}
    count_passes.clear()
    model = small_cnn(0)
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1e-6  # one weight, barely changed
    SSD(FixedAlpha(1.0)).unlearn(model, data, context(model, cache))
    assert sorted(count_passes) == ["forget", "full"]


@pytest.mark.parametrize("variant", ["ssd", "lfssd"])
def test_auto_caches_its_class_coherent_imp_d_beside_the_papers(tmp_path, count_passes, variant):
    """alpha=auto's imp_D (batches of one class) is its own entry: it never replaces the paper's
    imp_D, which a fixed-alpha run still finds, and a second auto run computes nothing."""
    data, cache = digits_data(), TensorCache(tmp_path)
    run_ssd(cache, data, variant=variant)
    assert sorted(count_passes) == ["forget", "full"]
    count_passes.clear()
    _, info = run_ssd(cache, data, policy=SearchedAlpha(max_steps=1), variant=variant)
    assert count_passes == ["full by class"], "Df's importance is shared, D's class-coherent one is new"
    assert info["importance_cache"] == {"full": "computed", "forget": "hit"}
    assert info["reference"]["grouped_by"] == ("label" if variant == "ssd" else "predicted class")
    count_passes.clear()
    _, again = run_ssd(cache, data, policy=SearchedAlpha(max_steps=1), variant=variant)
    _, fixed = run_ssd(cache, data, variant=variant)
    assert count_passes == [] and again["importance_cache"] == fixed["importance_cache"] == {"full": "hit",
                                                                                             "forget": "hit"}
    assert again["chosen_alpha"] == info["chosen_alpha"] and again["n_trials"] == info["n_trials"]
    _, mixed = run_ssd(cache, data, policy=SearchedAlpha(max_steps=1, reference="mixed"), variant=variant)
    assert count_passes == [], "reference=mixed is the paper's imp_D, already cached by the fixed run"
    assert mixed["reference"] == {"imp_D": "mixed batches (the paper's)", "grouped_by": None, "grouping_work": 0.0}


def test_importance_key_covers_exactly_its_inputs():
    data, other = digits_data("3"), digits_data("7")
    base = importance_parts("w", data, "full", "ssd", 64)
    assert importance_parts("w", other, "full", "ssd", 64) == base, "D's key is blind to the forget set"
    assert importance_parts("w", data, "forget", "ssd", 64) != importance_parts("w", other, "forget", "ssd", 64)
    assert importance_parts("w2", data, "full", "ssd", 64) != base
    assert importance_parts("w", data, "full", "ssd", 32) != base
    assert importance_parts("w", data, "full", "ssd", 64, torch.bfloat16) != base
    resized = UnlearningDataModule(build_digits, FullClassTask("3"), image_size=16)
    resized.setup()
    assert importance_parts("w", resized, "full", "ssd", 64) != base, "another transform"
    coarse = UnlearningDataModule(build_digits, FullClassTask("3"), labels="coarse")
    coarse.setup()
    assert importance_parts("w", coarse, "full", "ssd", 64) != base, "other labels change SSD's loss"
    assert importance_parts("w", coarse, "full", "lfssd", 64) == importance_parts("w", data, "full", "lfssd", 64)


def test_cache_off_computes_and_writes_nothing(tmp_path, count_passes):
    cfg = compose_config("unlearn", [f"paths.root_dir={tmp_path}", "cache=false", *QUIET])
    assert build_cache(cfg) is None
    cache = TensorCache(tmp_path / "cache")
    data = digits_data()
    run_ssd(cache, data, cache=False)
    run_ssd(cache, data, cache=False)
    assert len(count_passes) == 4 and not (tmp_path / "cache").exists()


def test_cached_original_evaluation_equals_uncached(tmp_path):
    data, model, cache = digits_data(), small_cnn(3), TensorCache(tmp_path)
    teacher = teacher_logits(small_cnn(99), data, cache)
    assert torch.equal(teacher, teacher_logits(small_cnn(99), data))
    plain = evaluate(model, data, teacher)
    first = evaluate(model, data, teacher, cache)
    second = evaluate(model, data, teacher, TensorCache(tmp_path))  # from disk, as another process would
    assert cache.stats.writes == 4  # teacher, D, test and validation logits
    for result in (first, second):
        assert json.dumps(result, sort_keys=True) == json.dumps(plain, sort_keys=True)
    # the same cached logits serve another forget set with its own metrics
    other = digits_data("7")
    assert json.dumps(evaluate(model, other, teacher_logits(small_cnn(99), other), cache)) == \
        json.dumps(evaluate(model, other, teacher_logits(small_cnn(99), other)))


def run_config(overrides: list[str]):
    """The composed unlearn config without its ``hydra`` node (in-process runs have no Hydra job)."""
    cfg = compose_config("unlearn", overrides)
    with open_dict(cfg):
        cfg.pop("hydra")
    return cfg


def test_unlearn_runs_share_the_cache_and_cache_false_writes_nothing(tmp_path):
    """Three in-process runs on a tiny ViT: cache=false, then two runs of a sweep sharing the cache."""
    cfg = compose_config("unlearn", [f"paths.root_dir={tmp_path}", "model=vit_tiny", *QUIET])
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "vit", build_model(cfg, 10, 1), {
        "dataset": "digits", "label_kind": "fine", "num_classes": 10, "model": "vit_tiny"})
    common = [f"paths.root_dir={tmp_path}", "model=vit_tiny", f"checkpoint={checkpoint}", *QUIET]
    off = unlearn(run_config([*common, "cache=false", "method.alpha=2"]), tmp_path / "off")
    assert not (tmp_path / ".cache").exists() and off["cache"] is None
    cold = unlearn(run_config([*common, "method.alpha=2"]), tmp_path / "cold")
    warm = unlearn(run_config([*common, "method.alpha=3"]), tmp_path / "warm")
    assert cold["method_info"]["importance_cache"] == {"full": "computed", "forget": "computed"}
    assert warm["method_info"]["importance_cache"] == {"full": "hit", "forget": "hit"}
    # two importances, the teacher's logits, the original's outputs over D, the test and validation sets, its metrics
    assert warm["cache"]["misses"] == 0 and warm["cache"]["memory_hits"] == 7
    assert len(list((tmp_path / ".cache" / "unlearning").glob("*.safetensors"))) == 7
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731
    assert same(off["metrics"], cold["metrics"]), "caching changes no number"
    assert same(off["metrics"]["original"], warm["metrics"]["original"])
    assert not math.isnan(warm["metrics"]["original"]["zrf"])


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_ranks_share_rank_zero_entries(tmp_path):
    """Under DDP, rank 0 decides hit or miss and every rank dampens with the same tensors."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    runs = []
    for name in ("cold", "warm"):
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, str(root / "tests" / "scripts" / "ddp_cache.py"), str(tmp_path / "c"),
                               str(out)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(out.read_text()))
    cold, warm = runs
    assert [r["cache_use"] for r in cold] == [{"full": "computed", "forget": "computed"}] * 2
    assert [r["cache_use"] for r in warm] == [{"full": "hit", "forget": "hit"}] * 2
    assert len({r["weights"] for r in cold + warm}) == 1, "all ranks and both runs dampen identically"
    assert len(list((tmp_path / "c").glob("*.safetensors"))) == 2, "rank 0 alone wrote the two entries"


def test_parallel_jobs_wait_for_the_one_computing(tmp_path):
    """Jobs of a sweep started together: one computes, the others wait for its entry (a lock file)."""
    import threading
    import time

    writer, waiter = TensorCache(tmp_path, poll_s=0.05), TensorCache(tmp_path, poll_s=0.05)
    started, calls = threading.Event(), []

    def first_job():
        with writer.claim(PARTS) as found:
            assert found is None
            started.set()
            time.sleep(0.5)  # computing
            writer.put(PARTS, entry())

    job = threading.Thread(target=first_job)
    job.start()
    started.wait()
    value = waiter.get_or_compute(PARTS, lambda: calls.append(1) or entry(5))
    job.join()
    assert calls == [] and waiter.stats.waits == 1 and torch.equal(value["a.weight"], entry()["a.weight"])
    assert not list(tmp_path.glob("*.lock")), "the lock is released"

    # a lock nobody refreshes (its job died) is taken over once it stays unrefreshed for stale_s,
    # as the waiter measures it (filelock's lease), whatever its file's mtime says
    other = dict(PARTS, batch_size=7)
    patient = TensorCache(tmp_path, poll_s=0.05, stale_s=0.5)
    lock = patient.path(patient.key(other)).with_suffix(".safetensors.lock")
    lock.write_text("a job that died\n")
    began = time.monotonic()
    assert patient.get_or_compute(other, lambda: calls.append(1) or entry()) is not None and calls == [1], \
        "a stale lock is taken over"
    assert time.monotonic() - began < 10 and not lock.exists()
    impatient = TensorCache(tmp_path, wait_s=0.2, poll_s=0.05)
    lock2 = impatient.path(impatient.key(dict(PARTS, batch_size=10))).with_suffix(".safetensors.lock")
    lock2.write_text("a live job\n")
    impatient.get_or_compute(dict(PARTS, batch_size=10), lambda: calls.append(2) or entry())
    assert calls[-1] == 2, "after wait_s the waiter computes the entry itself"


@pytest.mark.parametrize("shown", [True, False])
def test_importance_passes_show_progress_only_when_the_trainer_does(shown, capfd):
    """Minutes of importance passes on CIFAR or ViT must not be silent; tests and sweeps turn bars off."""
    model, data = small_cnn(0), digits_data()
    trainer = lambda **kw: L.Trainer(accelerator="cpu", devices=1, logger=False,  # noqa: E731
                                     enable_progress_bar=shown, enable_model_summary=False, **kw)
    context = MethodContext(make_trainer=trainer, fresh_model=small_cnn, original=model, task="fullclass")
    SSD(FixedAlpha(1.0), cache=False).unlearn(model, data, context)
    err = capfd.readouterr().err
    assert ("SSD importance over full" in err and "SSD importance over forget" in err) is shown
