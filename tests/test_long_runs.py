"""Long runs: many unlearning runs in one process keep memory flat, and the MemoryLog callback works."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.reliability_support import TINY, make_tiny_root, run_entry
from unlearning.memory import snapshot

RUNS = 14
SETTLE = 3  # the first runs fill allocator pools and import-time caches


@pytest.mark.slow
def test_repeated_runs_in_one_process_keep_memory_flat(tmp_path):
    """14 SSD runs through the entry point's code path: no tensor, logging handler or object kept per run.

    ``cache=false`` so that every run computes its importances (the 50-run Hydra sweep in
    docs/reliability.md measured the cached path).
    """
    root = make_tiny_root(tmp_path / "root")
    records = []
    for i in range(RUNS):
        code = run_entry("unlearn", [*TINY, f"paths.root_dir={root}", f"method.alpha={1 + i}", "cache=false"],
                         tmp_path / f"run{i}")
        assert code == 0
        records.append(snapshot())
        print(json.dumps({"run": i, **records[-1]}))  # shown with -s: the numbers in docs/reliability.md
    settled = records[SETTLE:]
    assert len({r["tensors"] for r in settled}) == 1, [r["tensors"] for r in records]
    assert len({r["log_handlers"] for r in settled}) == 1, [r["log_handlers"] for r in records]
    objects = [r["gc_objects"] for r in settled]
    assert objects[-1] - objects[0] < 50 * len(objects), objects  # a handful of interned strings at most
    rss = [r["rss_mib"] for r in settled]
    assert rss[-1] - rss[0] < 64, rss  # no growth beyond allocator noise (one leaked ResNet18 is 43 MiB)


@pytest.mark.slow
def test_memory_log_callback_writes_one_line_per_job(tmp_path):
    root = make_tiny_root(tmp_path / "root")
    sweep = tmp_path / "sweep"
    result = run_cli("unlearn.py", "-m", *TINY, "method.alpha=4,6", f"hydra.sweep.dir={sweep}",
                     "+hydra.callbacks.memory._target_=unlearning.memory.MemoryLog", root=root, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (sweep / "memory.jsonl").read_text().splitlines()]
    assert [line["job"] for line in lines] == [0, 1]
    assert all(line["rss_mib"] > 0 and line["tensors"] >= 0 for line in lines)
    assert all((sweep / str(job) / "results.json").is_file() for job in (0, 1))
