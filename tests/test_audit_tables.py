"""The audits' tables (U-LiRA's ulira.json, the challenge's challenge.json) from their records, on known values."""

from __future__ import annotations

import json
from pathlib import Path

from unlearning.report import records
from unlearning.report.audits import audit_tables


def ulira_record(method: str, seed: int, auc: float, control: float) -> dict:
    return {"status": "complete", "job": "audit", "audit": "ulira", "method": method, "dataset": "fashion_mnist",
            "model": "resnet18", "seed": seed, "shadows": 8, "forget": "100 random", "auc": auc,
            "balanced_accuracy": 0.6, "balanced_accuracy_at_zero": auc - 0.05, "control_auc": control,
            "has_power": control >= 0.6, "time_s": 100.0 + seed}


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_ulira_table_is_mean_and_std_over_seeds_per_method_in_run_order(tmp_path):
    write(tmp_path / "0" / "ulira.json", ulira_record("ssd", 0, 0.70, 0.72))
    write(tmp_path / "1" / "ulira.json", ulira_record("ssd", 1, 0.60, 0.58))
    write(tmp_path / "2" / "ulira.json", ulira_record("retrain", 0, 0.50, 0.72))
    write(tmp_path / "3" / "ulira.json", {"status": "running", "method": "lfssd"})  # unfinished: not a row
    table = audit_tables(tmp_path)["ulira"]
    lines = table.splitlines()
    assert len(lines) == 4, table
    ssd, retrain = lines[2], lines[3]
    assert "| ssd " in ssd and "0, 1" in ssd
    assert "0.650 ± 0.071" in ssd, "mean ± sample std of 0.70 and 0.60"
    assert "0.650 ± 0.099" in ssd, "the control's 0.72 and 0.58"
    assert "1 of 2" in ssd, "the audit has power on one of the two seeds (control >= 0.6)"
    assert "| retrain " in retrain and "0.500 " in retrain and "±" not in retrain.split("|")[6]


def test_a_results_folder_of_audits_alone_gives_its_tables(tmp_path):
    runs = tmp_path / "results" / "audit-only" / "runs"
    write(runs / "0-baseline" / "ulira.json", ulira_record("baseline", 0, 0.66, 0.66))
    tables = records.tables_of("audit-only", results=tmp_path / "results", out=tmp_path / "out")
    assert list(tables) == ["ulira"] and "baseline" in tables["ulira"]
    assert (tmp_path / "out" / "ulira.md").read_text().strip() == tables["ulira"].strip()


def test_the_committed_challenge_records_give_the_challenge_table():
    found = audit_tables(records.RESULTS / "fashion-challenge" / "runs")
    assert "challenge" in found
    rows = found["challenge"].splitlines()[2:]
    assert [row.split("|")[3].strip() for row in rows] == ["baseline", "ssd", "finetune", "lfssd", "neggrad_plus"]
