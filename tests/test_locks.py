"""compute_once across real processes: one computes, the others wait; a killed holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

JOB = """
import sys, time
from pathlib import Path
from unlearning.locks import compute_once
lock, artefact, name, work = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
with compute_once(lock, artefact.exists, wait_s=60, stale_s=1.0, poll_s=0.05) as mine:
    if mine:
        print("computing", flush=True)
        time.sleep(work)
        artefact.write_text(name)
    print("done", "computed" if mine else "waited", flush=True)
"""


def job(tmp_path: Path, name: str, work: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / "a.lock"), str(tmp_path / "artefact"), name,
                             str(work)], env=env, stdout=subprocess.PIPE, text=True)


def test_two_processes_compute_once(tmp_path):
    first = job(tmp_path, "first", 2.0)
    assert first.stdout.readline().strip() == "computing"
    second = job(tmp_path, "second", 0.0)
    outputs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert "done computed" in outputs[0] and "done waited" in outputs[1]
    assert (tmp_path / "artefact").read_text() == "first" and not (tmp_path / "a.lock").exists()


def test_a_killed_holder_is_taken_over_after_stale_s(tmp_path):
    holder = job(tmp_path, "killed", 600.0)
    assert holder.stdout.readline().strip() == "computing"
    holder.send_signal(signal.SIGKILL)  # no cleanup: the lock file stays, nobody refreshes it
    holder.wait(timeout=30)
    assert (tmp_path / "a.lock").exists()
    began = time.monotonic()
    survivor = job(tmp_path, "survivor", 0.0)
    out = survivor.communicate(timeout=60)[0]
    assert "done computed" in out and (tmp_path / "artefact").read_text() == "survivor"
    assert time.monotonic() - began < 30
