"""The record an unlearning run leaves in its folder (``results.json``), as one typed class.

unlearn.py writes a :class:`RunRecord` and the report (:mod:`unlearning.report.collect`),
the resume check and the logger read it back through the same class, so the writer and
its readers cannot drift apart on a key's name. The module needs neither Lightning nor
Hydra: a notebook can load a run's record with ``RunRecord.load(path)``.

Versions: ``version`` is :data:`RECORD_VERSION` in records written now. Records written
before the field existed have the same keys without it and are read as version 0; keys a
record lacks read as None, and keys this class does not know are kept (in ``extra``) and
written back, so reading and rewriting an older or newer record loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from unlearning.io import atomic_write_json

#: The version of the record that this code writes; bump it when a key changes meaning.
RECORD_VERSION = 1
#: The file name of the record in a run's folder (written last and atomically: it marks a finished run).
RESULTS_FILE = "results.json"
#: ``status`` of a finished run.
COMPLETE = "complete"


@dataclass
class RunRecord:
    """One unlearning run: what was forgotten, by what method, from which model, and what it measured.

    ``metrics`` maps a stage (``original``, ``unlearned``, and with a retrained reference
    ``retrained`` and ``relative``) to its metric values. Every key but ``version`` must be
    given when a run writes its record, so that a new key cannot be left out by mistake.
    """

    status: str | None
    job: str | None
    method: str | None
    dataset: str | None
    model: str | None
    task: str | None
    forget: str | None
    forget_target: str | None
    experiment: str | None
    label_kind: str | None
    seed: int | None
    class_names: list[str] | None
    n_forget: int | None
    n_retain: int | None
    metrics: dict[str, dict[str, Any]] | None
    reference: dict[str, Any] | None
    objective: float | None
    method_time_s: float | None
    evaluation_time_s: float | None
    method_info: dict[str, Any] | None
    cache: dict[str, Any] | None
    source_checkpoint: str | None
    source_test_acc: float | None
    source_seed: int | None
    unlearned_checkpoint: str | None
    config: dict[str, Any] | None
    version: int = RECORD_VERSION
    #: Keys of the file that this class does not know (a newer writer's); written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        """Whether the run finished (only a finished run writes its record, but a file can say otherwise)."""
        return self.status == COMPLETE

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object of ``results.json``: every key, in the order of the fields."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**data, **{k: v for k, v in self.extra.items() if k not in data}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record of a ``results.json`` object; missing keys are None, a missing ``version`` is 0."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a run record is a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {name: data.get(name) for name in known}
        values["version"] = data.get("version", 0)
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """The record in ``path``; OSError when it cannot be read, ValueError when it is not a record."""
        return cls.from_json(json.loads(Path(path).read_text()))

    def write(self, path: str | Path) -> None:
        """Write the record to ``path`` atomically (a reader sees the whole file or none)."""
        atomic_write_json(Path(path), self.to_json())


def record_complete(path: str | Path) -> bool:
    """True when ``path`` holds the record of a finished run; False when it is absent, unreadable or unfinished."""
    try:
        return RunRecord.load(path).complete
    except (OSError, ValueError):
        return False
