"""unlearning.record: the typed results.json that unlearn.py writes and the report reads."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from unlearning.record import RECORD_VERSION, RESULTS_FILE, RunRecord, record_complete

#: The keys of results.json before the record had a version (version 0): the record writes exactly these.
KEYS_V0 = ["status", "job", "method", "dataset", "model", "task", "forget", "forget_target", "experiment",
           "label_kind", "seed", "class_names", "n_forget", "n_retain", "metrics", "reference", "objective",
           "method_time_s", "evaluation_time_s", "method_info", "cache", "source_checkpoint", "source_test_acc",
           "source_seed", "unlearned_checkpoint", "config"]


def a_record(**changes) -> RunRecord:
    values = {name: None for name in KEYS_V0}
    values.update(status="complete", job="unlearn", method="ssd", seed=0, metrics={"original": {"test_acc": 90.0}},
                  method_info={"alpha": 10.0}, config={"method": {"alpha": 10.0}})
    values.update(changes)
    return RunRecord(**values)


def test_written_keys_are_the_old_keys_plus_version(tmp_path):
    record = a_record()
    record.write(tmp_path / RESULTS_FILE)
    data = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert list(data) == [*KEYS_V0, "version"] and data["version"] == RECORD_VERSION
    assert RunRecord.load(tmp_path / RESULTS_FILE) == record and record_complete(tmp_path / RESULTS_FILE)


def test_a_writer_cannot_leave_a_key_out():
    with pytest.raises(TypeError):
        RunRecord(status="complete")  # type: ignore[call-arg]
    assert {f.name for f in fields(RunRecord)} == {*KEYS_V0, "version", "extra"}


def test_old_and_partial_records_are_read():
    old = {key: value for key, value in a_record().to_json().items() if key != "version"}
    record = RunRecord.from_json({**old, "from_a_newer_writer": 1})
    assert record.version == 0 and record.method == "ssd" and record.complete
    assert record.to_json()["from_a_newer_writer"] == 1, "unknown keys are kept, not dropped"
    partial = RunRecord.from_json({"status": "running"})
    assert partial.metrics is None and not partial.complete


@pytest.mark.parametrize("text", ["", "[1, 2]", '{"status": "failed"}'])
def test_unfinished_or_broken_files_are_not_complete(tmp_path, text):
    (tmp_path / RESULTS_FILE).write_text(text)
    assert not record_complete(tmp_path / RESULTS_FILE) and not record_complete(tmp_path / "absent.json")


def test_importable_without_lightning_or_hydra():
    code = "import sys, unlearning.record; print(any(m in sys.modules for m in ('lightning', 'hydra', 'torch')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
