"""Writes checkpoints or results.json in forked children and SIGKILLs them mid-write.

Run by tests/test_nothing_lost.py as ``python tests/killed_writer.py MODE BASE TRIALS SEED``:

- ``checkpoint``: each child saves a 32 MB model again and again into ``BASE/trialK/ckpt``
  (every weight equal to the save number, which the metadata records too); the parent
  kills it with SIGKILL after a random delay.
- ``results``: the same with ``atomic_write_json`` of a ~4 MB results-like dict into
  ``BASE/trialK/results.json``.
- ``points``: a child saves checkpoint 1, then checkpoint 2 and kills itself with SIGKILL
  at one chosen point inside the save (``BASE/<point>/ckpt``).

Torch is imported once and the children are forked, so each trial costs a fraction of a
second instead of a fresh interpreter. Checking is left to the test.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

KILL_POINTS = ("mid_weights", "after_weights", "between_renames", "before_cleanup")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fork(body) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def checkpoint_loop(target: Path) -> None:
    import torch

    from unlearning.models.checkpoints import save_checkpoint

    model = torch.nn.Linear(2048, 4096)
    i = 0
    while True:
        i += 1
        with torch.no_grad():
            model.weight.fill_(i)
            model.bias.fill_(i)
        save_checkpoint(target, model, {"i": i})


def results_loop(target: Path) -> None:
    from unlearning.io import atomic_write_json

    i = 0
    while True:
        i += 1
        atomic_write_json(target, {"i": i, "status": "complete", "rows": [[i] * 100] * 4000, "end": i})


def kill_at(point: str, target: Path) -> None:
    import torch

    import unlearning.io as io
    import unlearning.models.checkpoints as checkpoints

    model = torch.nn.Linear(256, 256)
    with torch.no_grad():
        model.weight.fill_(1)
        model.bias.fill_(1)
    checkpoints.save_checkpoint(target, model, {"i": 1})
    with torch.no_grad():
        model.weight.fill_(2)
        model.bias.fill_(2)
    real_save, real_rename = checkpoints.save_file, io.os.rename
    if point == "mid_weights":
        def save_half(state, path):
            real_save(state, path)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            _die()
        checkpoints.save_file = save_half
    elif point == "after_weights":
        def save_then_die(state, path):
            real_save(state, path)
            _die()
        checkpoints.save_file = save_then_die
    elif point == "between_renames":
        calls = []

        def rename_then_die(src, dst):
            real_rename(src, dst)  # the first try (staging -> target) fails: the target exists
            calls.append(dst)
            if len(calls) == 1:  # the old folder is retired; the new one is not in place yet
                _die()
        io.os.rename = rename_then_die
    elif point == "before_cleanup":
        def rmtree_dies(path, *args, **kwargs):
            _die()
        io.shutil.rmtree = rmtree_dies
    checkpoints.save_checkpoint(target, model, {"i": 2})


def main() -> None:
    mode, base, trials, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import torch

    torch.set_num_threads(1)  # no thread pools to inherit across fork
    import unlearning.io  # noqa: F401  (imported before forking, so children start writing at once)
    import unlearning.models.checkpoints  # noqa: F401

    rng = random.Random(seed)
    if mode == "points":
        for point in KILL_POINTS:
            pid = _fork(lambda point=point: kill_at(point, base / point / "ckpt"))
            os.waitpid(pid, 0)
        return
    loop = checkpoint_loop if mode == "checkpoint" else results_loop
    name = "ckpt" if mode == "checkpoint" else "results.json"
    for trial in range(trials):
        target = base / f"trial{trial}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pid = _fork(lambda target=target: loop(target))
        time.sleep(rng.uniform(0.02, 1.0))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print(f"killed trial {trial}", flush=True)


if __name__ == "__main__":
    main()
