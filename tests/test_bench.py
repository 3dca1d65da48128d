"""`python -m bench`'s new sections run and measure what they say (their timings are benchmarks, not asserted)."""

from __future__ import annotations

import pytest
import torch

from bench.many import bench_many
from bench.training import bench_training


def test_training_section_times_train_py_against_a_bare_loop():
    out: dict = {}
    bench_training(torch.device("cpu"), out, epochs=1, settings={"digits": ["dataset=digits"]})
    row = out["training"]["digits"]
    assert row["n_train"] == 1293 and row["n_val"] == 144 and row["epochs"] == 1, "train.py's own split, no test data"
    assert row["train_py_s"] > 0 and row["bare_before_s"] > 0 and row["bare_after_s"] > 0
    assert row["training_vs_bare"] == pytest.approx(row["bare_s"] / row["train_py_s"], rel=1e-6)


def test_many_section_trains_stacked_models_like_separate_ones():
    out: dict = {}
    bench_many(out, ks=(1, 2), steps=2, size=8, batch=16)
    rows = out["many"]["rows"]
    assert [r["k"] for r in rows] == [1, 2]
    for row in rows:  # the same batches and optimiser: vmapped training equals one-at-a-time within float tolerance
        assert row["max_weight_difference"] < 1e-4, row
        assert row["stacked_s"] > 0 and row["one_at_a_time_s"] > 0
