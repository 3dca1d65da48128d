"""Same config and seed, two fresh processes: bit-identical unlearned weights and identical metrics (CPU)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import CONF, QUIET, compose_config, run_cli
from tests.reliability_support import TINY, digest_tree, files_under, make_tiny_root

#: results.json keys that measure the clock, name the run's own folder or count cache hits, not the result.
VOLATILE = {"method_time_s", "evaluation_time_s", "unlearned_checkpoint", "cache"}


def comparable(results: dict) -> str:
    """results.json without wall times and run paths, as JSON text (so that NaN equals NaN)."""
    kept = {key: value for key, value in results.items() if key not in VOLATILE}
    kept["method_info"] = {key: value for key, value in results["method_info"].items() if not key.endswith("_time_s")}
    if "config" in kept:  # the logger writes into the run's own folder, so its save_dir differs by design
        kept["config"] = {key: value for key, value in kept["config"].items() if key != "logger"}
    return json.dumps(kept, sort_keys=True)


def run_twice(overrides: list[str], root: Path, tmp_path: Path) -> tuple[list[bytes], list[dict]]:
    """``unlearn.py overrides`` in two fresh processes at once; their weights (bytes) and results."""
    def run(name: str):
        run_dir = tmp_path / name
        return run_cli("unlearn.py", *overrides, f"hydra.run.dir={run_dir}", root=root, timeout=1200), run_dir

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, ["first", "second"]))
    weights, results = [], []
    for result, run_dir in outcomes:
        assert result.returncode == 0, result.stderr[-3000:]
        weights.append((run_dir / "unlearned" / "model.safetensors").read_bytes())
        results.append(json.loads((run_dir / "results.json").read_text()))
    return weights, results


def assert_identical(weights: list[bytes], results: list[dict]) -> None:
    assert weights[0] == weights[1], "the unlearned weights differ between two runs with the same seed"
    assert comparable(results[0]) == comparable(results[1]), "the metrics differ between two runs"
    assert results[0]["method_info"].get("parameters_changed", 1) > 0 or results[0]["method"] == "baseline"


@pytest.mark.e2e
def test_ssd_twice_in_fresh_processes_is_bit_identical(tmp_path):
    """Also: the source checkpoint stays byte-identical and nothing is written outside the two run folders."""
    root = make_tiny_root(tmp_path / "root")
    checkpoints, before = digest_tree(root / "checkpoints"), files_under(tmp_path)
    weights, results = run_twice([*TINY, "logger=csv", "method=ssd", "task.forget=4", "cache=false"], root, tmp_path)
    assert_identical(weights, results)
    assert digest_tree(root / "checkpoints") == checkpoints, "the source checkpoint changed"
    new = files_under(tmp_path) - before
    assert sorted(p for p in new if p.split("/")[0] not in ("first", "second")) == [], "written outside the runs"
    assert {"first/results.json", "first/unlearned/model.safetensors", "first/logs/metrics.csv"} <= new


def training_methods() -> list[str]:
    """Training-based methods present in conf/method (they land with the baselines)."""
    return [name for name in ("finetune", "amnesiac", "badteacher", "retrain") if (CONF / "method" / f"{name}.yaml").is_file()]


def short_training(method: str) -> list[str]:
    """Overrides that cut a training-based method to one short epoch, for keys the method has."""
    cfg = compose_config("unlearn", [f"method={method}"]).method
    cuts = {"epochs": 1, "max_epochs": 1}
    return [f"method.{key}={value}" for key, value in cuts.items() if key in cfg]


@pytest.mark.slow
@pytest.mark.parametrize("method,task", [("ssd", "fullclass"), ("lfssd", "fullclass"), ("ssd", "random"),
                                         ("lfssd", "subclass")])
def test_resnet18_twice_in_fresh_processes_is_bit_identical(trained_root, tmp_path, method, task):
    overrides = [*QUIET, f"paths.root_dir={trained_root}", f"method={method}", f"task={task}",
                 "train_if_missing=false", "cache=false"]
    weights, results = run_twice(overrides, trained_root, tmp_path)
    assert_identical(weights, results)


@pytest.mark.slow
def test_cache_hit_gives_the_same_weights_as_a_fresh_computation(trained_root, tmp_path):
    """A run that reads importances and logits from the disk cache equals one that computed them."""
    overrides = [*QUIET, f"paths.root_dir={trained_root}", "train_if_missing=false", "task.forget=2",
                 f"paths.cache_dir={tmp_path / 'cache'}"]
    outcomes = []
    for name in ("computes", "reads"):
        result = run_cli("unlearn.py", *overrides, f"hydra.run.dir={tmp_path / name}", root=trained_root, timeout=1200)
        assert result.returncode == 0, result.stderr[-3000:]
        outcomes.append(tmp_path / name)
    results = [json.loads((run / "results.json").read_text()) for run in outcomes]
    assert results[0]["cache"]["misses"] > 0 and results[1]["cache"]["disk_hits"] > 0
    weights = [(run / "unlearned" / "model.safetensors").read_bytes() for run in outcomes]
    assert_identical(weights, results)


@pytest.mark.slow
def test_training_based_method_twice_is_bit_identical(trained_root, tmp_path):
    methods = training_methods()
    if not methods:
        pytest.skip("no training-based method in conf/method yet (issue 4)")
    method = methods[0]
    overrides = [*QUIET, f"paths.root_dir={trained_root}", f"method={method}", *short_training(method),
                 "train_if_missing=false", "cache=false"]
    weights, results = run_twice(overrides, trained_root, tmp_path)
    assert_identical(weights, results)


@pytest.mark.slow
def test_deterministic_mode_runs_on_cpu_and_changes_nothing_there(tmp_path):
    """trainer.deterministic=true turns PyTorch's switches on, runs, and on the CPU gives the same weights."""
    import torch
    from safetensors.torch import load_file

    from tests.reliability_support import run_entry

    root = make_tiny_root(tmp_path / "root")
    for mode in ("false", "true"):
        code = run_entry("unlearn", [*TINY, f"paths.root_dir={root}", "cache=false", f"trainer.deterministic={mode}"],
                         tmp_path / mode)
        assert code == 0
        assert torch.are_deterministic_algorithms_enabled() == (mode == "true")
    code = run_entry("unlearn", [*TINY, f"paths.root_dir={root}", "cache=false"], tmp_path / "again")
    assert code == 0 and not torch.are_deterministic_algorithms_enabled(), "false must undo an earlier true"
    first, second = (load_file(str(tmp_path / mode / "unlearned" / "model.safetensors")) for mode in ("false", "true"))
    assert all(torch.equal(first[name], second[name]) for name in first)
