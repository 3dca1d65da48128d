"""The committed raw records behind every published table, and the check that docs still show them.

Each published table has a folder ``results/<name>/``: every run's ``results.json`` with its
``.hydra/overrides.yaml`` (no model weights), the sweep's ``multirun.yaml``, a ``command.txt``
saying how the sweep was launched, and ``report/``, what ``python -m unlearning.report`` makes
of them. README.md and docs/ embed a table between two markers::

    <!-- table: fashion-fullclass fashion_mnist-fine-fullclass-resnet18 -->
    | ... the table ... |
    <!-- /table -->

(the folder name, then the report's table name, as ``python -m unlearning.report`` prints it;
the name ``demo-output`` embeds what ``make demo`` prints for a demo sweep's records instead).
A figure quoted in prose is embedded the same way, as one cell of such a table, chosen by the
values of other columns in its row::

    the attack reads AUC <!-- value: fashion-random fashion_random-resnet18 | method=baseline | MIA AUC -->0.613 ± 0.022<!-- /value -->

so that prose cannot drift from the records either. A Python format after the column rounds every
number of the cell for prose ("34.78 ± 20.19" -> "35 ± 20"); ``first`` before it keeps only the
leading one, the mean over seeds; both are checked the same way::

    Dr-test falls to <!-- value: digits-zeroshot digits_zeroshot-resnet18 | method=jit, data needed=Df only | Dr-test % | first .0f -->35<!-- /value --> % A figure of ``bench/results.json`` (what ``make
bench`` and ``python -m bench.recipe`` record) is embedded by its entry, its path inside it and a
Python format::

    SSD / a bare loop <!-- bench: cpu ssd.ssd_vs_bare | .3f -->1.001<!-- /bench -->

A figure of one run that no table shows (a per-seed value, a search's choice in ``method_info``) is
embedded by the run, chosen by ``key=value`` pairs of its overrides (``.hydra/overrides.yaml``) or of
its record's top-level fields, and a dotted path in its ``results.json``::

    test accuracy <!-- record: digits-poison-unguarded | seed=1, task.identified=0.1 | metrics.unlearned.test_acc | .1f -->35.3<!-- /record --> %

A count of runs that hold true at a yes/no field ("N of M", M the runs the pairs select)::

    the guard stopped the search on <!-- count: digits-poison | method=potion, task.identified=0.5 | method_info.validation_guard.stopped_search -->2 of 3<!-- /count --> seeds

    python -m unlearning.report.records export SWEEP_DIR NAME   # copy a finished sweep's records in
    python -m unlearning.report.records export SWEEP_DIR NAME --part seed-0   # one part of a table swept in parts
    python -m unlearning.report.records sync                     # regenerate reports, rewrite the embedded tables
    python -m unlearning.report.records check                    # exit 1 when a doc differs from its records

``make tables`` runs ``sync``; a default test runs ``check``, so a table that drifts from its
records, or a record that changes without its table, fails the suite.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from unlearning.errors import UserError

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "results"
#: The documents whose embedded tables are kept in step with their records.
DOCUMENTS = ("README.md", "docs")
#: An embedded table; the body may be empty (a new block that ``make tables`` fills).
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w.-]+) (?P<table>[^>]+?) -->\n)(?P<body>.*?)(\n?<!-- /table -->)", re.S)
#: A figure quoted in prose: one cell of an embedded table, the row chosen by ``column=value`` pairs.
VALUE = re.compile(r"(<!-- value: (?P<name>[\w.-]+) (?P<table>[^|>]+?) \| (?P<row>[^|>]+?) \| (?P<column>[^|>]+?)"
                   r"(?: \| (?P<format>[^|>]+?))? -->)(?P<body>[^<]*)(<!-- /value -->)")
#: A number in a cell ("34.78 ± 20.19", "3 of 10"): what a value marker's format rewrites.
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: A figure of the committed benchmark records: an entry of bench/results.json, a dotted path inside it, a format.
BENCH = re.compile(r"(<!-- bench: (?P<key>[^\s|>]+) (?P<path>[^\s|>]+) \| (?P<format>[^|>]+?) -->)"
                   r"(?P<body>[^<]*)(<!-- /bench -->)")
BENCH_RECORDS = ROOT / "bench" / "results.json"
#: A figure of one committed run: the run chosen by its overrides or record fields, a dotted path in its results.json.
RECORD = re.compile(r"(<!-- record: (?P<name>[\w.-]+) \| (?P<row>[^|>]+?) \| (?P<path>[^\s|>]+) \| (?P<format>[^|>]+?) -->)"
                    r"(?P<body>[^<]*)(<!-- /record -->)")
#: How many of the selected committed runs hold true at a dotted path (a yes/no field such as a guard's verdict).
COUNT = re.compile(r"(<!-- count: (?P<name>[\w.-]+) \| (?P<row>[^|>]+?) \| (?P<path>[^\s|>]+) -->)"
                   r"(?P<body>[^<]*)(<!-- /count -->)")
#: A run's record: unlearn.py's results.json, or an audit's (audit.py: ulira.json, challenge.json).
RECORD_FILES = ("results.json", "ulira.json", "challenge.json")
KEEP = (*RECORD_FILES, ".hydra/overrides.yaml")
#: The file that marks ``results/<name>/runs/<part>/`` as a part of a table exported with ``--part``
#: (run folders are named freely, e.g. ``0-baseline``, so a part cannot be told from a run by its name).
PART_MARKER = ".part"
#: The table name that embeds ``make demo``'s printed output (:func:`unlearning.demo.rendered`) instead of a report table.
DEMO_OUTPUT = "demo-output"


def export(sweep: Path, name: str, results: Path = RESULTS, command: str | None = None,
           part: str | None = None) -> Path:
    """Copy every finished run's record under ``sweep`` into ``results/<name>/runs/`` (weights stay behind).

    ``part`` exports into ``results/<name>/runs/<part>/`` and replaces only that part: a table too long
    for one sitting (the benchmark's full-class table is hours on 2 cores) is swept in parts, e.g. one
    training seed at a time, and its report reads every part. Without ``part`` the whole folder is replaced.
    """
    sweep = Path(sweep).expanduser()
    records = sorted({r for name in RECORD_FILES for r in sweep.rglob(name)})
    records = [r for r in records if "report" not in r.relative_to(sweep).parts]
    if not records:
        raise UserError(f"no results.json (nor an audit's ulira.json or challenge.json) under {sweep}: "
                        "run the sweep first")
    if part is not None and (not re.fullmatch(r"[\w.-]+", part) or part in (".", "..")):
        raise UserError(f"part {part!r} must be a plain folder name (letters, digits, '.', '-', '_')")
    runs = results / name / "runs"
    parts = sorted(marker.parent.name for marker in runs.glob(f"*/{PART_MARKER}"))
    if part is None and parts:
        raise UserError(f"results/{name} is kept in parts ({', '.join(parts)}): export with --part so "
                        f"that the other parts stay")
    if part is not None and runs.is_dir() and any(p.name not in parts for p in runs.iterdir()):
        raise UserError(f"results/{name} holds runs exported whole: export without --part to replace them, "
                        f"or into another results name")
    target = runs if part is None else runs / part
    if target.exists():
        shutil.rmtree(target)
    for run in sorted({record.parent for record in records}):
        for relative in KEEP:
            source = run / relative
            if source.is_file():
                destination = target / run.relative_to(sweep) / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
    if (sweep / "multirun.yaml").is_file():
        shutil.copyfile(sweep / "multirun.yaml", target / "multirun.yaml")
    if part is not None:
        (target / PART_MARKER).write_text("one part of this table's records (records export --part)\n")
    if command:
        (results / name / "command.txt").write_text(command.strip() + "\n")
    return target


def tables_of(name: str, results: Path = RESULTS, out: Path | None = None) -> dict[str, str]:
    """The report's tables (by table name) made from ``results/<name>/runs``, written to ``out`` (default its report/).

    Runs of ``unlearn.py`` give the report's tables; audit records (``ulira.json``, ``challenge.json``)
    give the tables named ``ulira`` and ``challenge`` (:mod:`unlearning.report.audits`).
    """
    from unlearning.report.audits import audit_tables
    from unlearning.report.write import write_report

    runs = results / name / "runs"
    if not runs.is_dir():
        raise UserError(f"results/{name} has no runs/ folder: export a sweep into it first")
    out = out or results / name / "report"
    tables = audit_tables(runs, out)
    if any("report" not in r.relative_to(runs).parts for r in runs.rglob("results.json")):
        tables.update(write_report([runs], out).tables)
    return tables


def documents(root: Path = ROOT) -> Iterable[Path]:
    for entry in DOCUMENTS:
        path = root / entry
        yield from ([path] if path.is_file() else sorted(path.rglob("*.md")))


def embedded(text: str) -> list[re.Match]:
    """Every embedded table and every embedded prose figure of ``text``."""
    return [*BLOCK.finditer(text), *VALUE.finditer(text), *BENCH.finditer(text), *RECORD.finditer(text),
            *COUNT.finditer(text)]


def value_at(value: object, path: str, what: str) -> object:
    """What lies at ``path`` (dotted; list positions as integers) inside ``value``; ``what`` names it in errors."""
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            raise UserError(f"{what} has no {path!r} (stopped at {step!r})")
    return value


def number_at(value: object, path: str, what: str) -> int | float:
    """The number at ``path`` inside ``value`` (see ``value_at``); anything else is an error."""
    value = value_at(value, path, what)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{what}: {path} is {value!r}, not a number")
    return value


def bench_figure(records: dict, key: str, path: str, spec: str, where: str) -> str:
    """The number at ``path`` (dotted; list positions as integers) in entry ``key`` of the bench records, formatted."""
    if key not in records:
        raise UserError(f"{where}: bench/results.json has no entry {key!r}; entries: {', '.join(records)}")
    value = number_at(records[key], path, f"{where}: bench/results.json's {key!r}")
    try:
        return format(value, spec.strip())
    except ValueError as error:
        raise UserError(f"{where}: bad format {spec.strip()!r} for {key} {path}: {error}") from None


def run_fields(record_path: Path) -> dict[str, str]:
    """What a run can be chosen by: its record's top-level scalars, then its overrides (``key=value``)."""
    record = json.loads(record_path.read_text())
    fields = {key: str(value) for key, value in record.items() if isinstance(value, str | int | float | bool)}
    overrides = record_path.parent / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        for line in overrides.read_text().splitlines():
            key, _, value = line.strip().removeprefix("- ").lstrip("+~").partition("=")
            if key and _:
                fields[key.strip()] = value.strip()
    return fields


def selected_runs(results: Path, name: str, row: str, where: str) -> list[Path]:
    """The results.json of every run of ``results/name`` whose overrides or record fields have ``row``'s pairs."""
    wanted = dict(pair.strip().split("=", 1) for pair in row.split(",") if "=" in pair)
    if not wanted:
        raise UserError(f"{where}: run selector {row!r} must be key=value pairs separated by commas")
    wanted = {key.strip(): value.strip() for key, value in wanted.items()}
    runs = sorted((results / name / "runs").rglob("results.json")) if (results / name / "runs").is_dir() else []
    if not runs:
        raise UserError(f"{where}: the embedded run figure's records {name} do not exist (results/{name}/runs)")
    return [run for run in runs if all(run_fields(run).get(key) == value for key, value in wanted.items())]


def record_figure(results: Path, name: str, row: str, path: str, spec: str, where: str) -> str:
    """The number at ``path`` in the results.json of the one run of ``results/name`` that ``row`` selects, formatted."""
    found = selected_runs(results, name, row, where)
    if len(found) != 1:
        raise UserError(f"{where}: {len(found)} runs of {name} have {row!r} (one is needed)")
    value = number_at(json.loads(found[0].read_text()), path, f"{where}: {found[0].relative_to(results)}")
    try:
        return format(value, spec.strip())
    except ValueError as error:
        raise UserError(f"{where}: bad format {spec.strip()!r} for {name} {path}: {error}") from None


def count_figure(results: Path, name: str, row: str, path: str, where: str) -> str:
    """"N of M": of the M runs of ``results/name`` that ``row`` selects, how many hold true at ``path`` (a yes/no field)."""
    found = selected_runs(results, name, row, where)
    if not found:
        raise UserError(f"{where}: no run of {name} has {row!r} (a count needs at least one)")
    flags = []
    for run in found:
        value = value_at(json.loads(run.read_text()), path, f"{where}: {run.relative_to(results)}")
        if not isinstance(value, bool):
            raise UserError(f"{where}: {run.relative_to(results)}: {path} is {value!r}, not true or false")
        flags.append(value)
    return f"{sum(flags)} of {len(flags)}"


def formatted(value: str, spec: str, where: str) -> str:
    """A cell's numbers in ``spec``'s format (``first SPEC``: its leading number alone), for prose that rounds it."""
    first, spec = spec.strip().startswith("first "), spec.strip().removeprefix("first ").strip()
    numbers = list(NUMBER.finditer(value))
    if not numbers:
        raise UserError(f"{where}: the cell {value!r} has no number for the format {spec!r}")
    try:
        if first:
            return format(float(numbers[0].group()), spec)
        return NUMBER.sub(lambda number: format(float(number.group()), spec), value)
    except ValueError as error:
        raise UserError(f"{where}: bad format {spec!r}: {error}") from None


def markdown_rows(table: str) -> Iterable[dict[str, str]]:
    """The rows of every pipe table in ``table`` (a report's table may hold several), as {column: cell}."""
    header: list[str] | None = None
    for line in [*table.splitlines(), ""]:
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not all(set(cell) <= set(":-") for cell in cells):
            yield dict(zip(header, cells, strict=False))


def cell(table: str, row: str, column: str, where: str) -> str:
    """The one cell of ``column`` in the row that ``row`` (``col=value, ...``) selects; anything else is an error."""
    try:
        wanted = dict(pair.split("=", 1) for pair in (p.strip() for p in row.split(",")) if pair)
    except ValueError:
        raise UserError(f"{where}: row selector {row!r} must be column=value pairs separated by commas") from None
    wanted = {key.strip(): value.strip() for key, value in wanted.items()}
    found = [r[column] for r in markdown_rows(table)
             if column in r and all(r.get(key) == value for key, value in wanted.items())]
    if len(found) != 1:
        raise UserError(f"{where}: {len(found)} rows have {column!r} where {row!r} (one is needed)")
    return found[0]


def render_blocks(text: str, tables: dict[str, dict[str, str]], where: Path, results: Path = RESULTS,
                  bench: Path = BENCH_RECORDS) -> str:
    """``text`` with every embedded table and prose figure replaced by what its records make; unknown names are errors."""
    def replace(match: re.Match) -> str:
        name, table = match["name"], match["table"].strip()
        if table == DEMO_OUTPUT:  # the demo's printed output, made from the demo sweep's records
            from unlearning.demo import rendered

            runs = results / name / "runs"
            if not runs.is_dir():
                raise UserError(f"{where}: the embedded demo output {name} has no records (results/{name}/runs)")
            return f"{match.group(1)}```\n{rendered(runs)}```\n<!-- /table -->"
        if table not in tables.get(name, {}):
            known = ", ".join(tables.get(name, {})) or f"none (no results/{name})"
            raise UserError(f"{where}: the embedded table {name} {table!r} is not in its records; tables there: {known}")
        return f"{match.group(1)}{tables[name][table].strip()}\n<!-- /table -->"

    def replace_value(match: re.Match) -> str:
        name, table = match["name"], match["table"].strip()
        if table not in tables.get(name, {}):
            raise UserError(f"{where}: the embedded figure's table {name} {table!r} is not in its records")
        value = cell(tables[name][table], match["row"], match["column"].strip(), f"{where} ({name} {table})")
        if match["format"]:
            value = formatted(value, match["format"], f"{where} ({name} {table}, {match['column'].strip()})")
        return f"{match.group(1)}{value}<!-- /value -->"

    bench_records: dict | None = None

    def replace_bench(match: re.Match) -> str:
        nonlocal bench_records
        if bench_records is None:
            if not bench.is_file():
                raise UserError(f"{where}: embeds a bench figure but {bench} does not exist")
            bench_records = json.loads(bench.read_text())
        value = bench_figure(bench_records, match["key"], match["path"], match["format"], str(where))
        return f"{match.group(1)}{value}<!-- /bench -->"

    def replace_record(match: re.Match) -> str:
        value = record_figure(results, match["name"], match["row"], match["path"], match["format"], str(where))
        return f"{match.group(1)}{value}<!-- /record -->"

    def replace_count(match: re.Match) -> str:
        value = count_figure(results, match["name"], match["row"], match["path"], str(where))
        return f"{match.group(1)}{value}<!-- /count -->"

    for kind, pattern in (("value", VALUE), ("bench", BENCH), ("record", RECORD), ("count", COUNT)):  # a missed marker goes unchecked
        matched = {m.start() for m in pattern.finditer(text)}
        unmatched = [m.start() for m in re.finditer(rf"(?<!`)<!-- {kind}: ", text) if m.start() not in matched]
        if unmatched:
            line = text.count("\n", 0, unmatched[0]) + 1
            raise UserError(f"{where}:{line}: a malformed <!-- {kind}: ... --> marker (see python -m "
                            "unlearning.report.records --help for the syntax): it would never be checked")
    text = BENCH.sub(replace_bench, VALUE.sub(replace_value, BLOCK.sub(replace, text)))
    return COUNT.sub(replace_count, RECORD.sub(replace_record, text))


def all_tables(names: Iterable[str], results: Path, scratch: Path | None) -> dict[str, dict[str, str]]:
    return {name: tables_of(name, results, None if scratch is None else scratch / name) for name in names}


def sync(root: Path = ROOT, results: Path = RESULTS, write: bool = True) -> list[str]:
    """Regenerate every results/<name>/report and the embedded tables; returns the differences found (unified diffs).

    ``write=False`` (``check``) regenerates into a temporary folder and changes nothing.
    """
    names = sorted(p.name for p in results.iterdir() if (p / "runs").is_dir()) if results.is_dir() else []
    with tempfile.TemporaryDirectory() as scratch:
        tables = all_tables(names, results, None if write else Path(scratch))
        differences = []
        for document in documents(root):
            text = document.read_text()
            if not embedded(text):
                continue
            new = render_blocks(text, tables, document, results, root / "bench" / "results.json")
            if new != text:
                differences.append("".join(difflib.unified_diff(
                    text.splitlines(keepends=True), new.splitlines(keepends=True),
                    fromfile=f"{document.relative_to(root)} (as written)",
                    tofile=f"{document.relative_to(root)} (from its records)")))
                if write:
                    document.write_text(new)
    return differences


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearning.report.records", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    export_parser = commands.add_parser("export", help="copy a finished sweep's records into results/NAME")
    export_parser.add_argument("sweep", type=Path)
    export_parser.add_argument("name")
    export_parser.add_argument("--command", dest="launch", help="how the sweep was launched (stored in command.txt)")
    export_parser.add_argument("--part", help="export into runs/PART, replacing only that part (a table swept in parts)")
    commands.add_parser("sync", help="regenerate every report and rewrite the embedded tables")
    commands.add_parser("check", help="exit 1 when an embedded table differs from its records")
    args = parser.parse_args(argv)
    try:
        if args.action == "export":
            print(f"records in {export(args.sweep, args.name, command=args.launch, part=args.part)}")
            return 0
        differences = sync(write=args.action == "sync")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for difference in differences:
        print(difference)
    if args.action == "check" and differences:
        print(f"{len(differences)} document(s) differ from their records: run `make tables`", file=sys.stderr)
        return 1
    print("every embedded table matches its records" if not differences else f"rewrote {len(differences)} document(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
