"""Every table README.md and docs/ embed is what the report makes of its committed records (results/).

The records are the raw ``results.json`` of every run behind a published table; a table edited by
hand, a record changed without its table, or a report change that moves a number fails here.
``make tables`` regenerates them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unlearning.errors import UserError
from unlearning.report import records


def test_every_embedded_table_matches_its_records():
    differences = records.sync(write=False)
    assert not differences, "tables differ from their records (run `make tables`):\n" + "\n".join(differences)


def test_the_check_finds_a_table_edited_by_hand(tmp_path):
    """The check is not vacuous: a changed digit in an embedded table is found, an unknown table refused.

    One committed record set, copied, so that each sync renders its tables alone (rendering all of
    results/ six times took minutes) and writing never touches the repository's reports.
    """
    names = sorted(p.name for p in records.RESULTS.iterdir() if (p / "runs").is_dir()) if records.RESULTS.is_dir() else []
    if not names:
        pytest.skip("no committed records yet")
    name = names[0]
    results = tmp_path / "results"
    shutil.copytree(records.RESULTS / name / "runs", results / name / "runs")
    tables = records.tables_of(name, results, out=tmp_path / "scratch")
    table_name, table = next(iter(tables.items()))
    edited = table.replace("0", "9", 1) if "0" in table else table + "x"
    doc = tmp_path / "README.md"
    doc.write_text(f"intro\n<!-- table: {name} {table_name} -->\n{edited}\n<!-- /table -->\nend\n")
    (tmp_path / "docs").mkdir()
    assert records.sync(root=tmp_path, results=results, write=False), "a hand-edited table must be reported"
    records.sync(root=tmp_path, results=results, write=True)
    assert table.strip() in doc.read_text() and records.sync(root=tmp_path, results=results, write=False) == []
    doc.write_text(f"intro\n<!-- table: {name} {table_name} -->\n<!-- /table -->\nend\n")  # a new, empty block
    assert records.sync(root=tmp_path, results=results, write=False), "an empty block must be reported, not skipped"
    records.sync(root=tmp_path, results=results, write=True)
    assert table.strip() in doc.read_text() and doc.read_text().endswith("<!-- /table -->\nend\n")
    doc.write_text(f"<!-- table: {name} no such table -->\n|x|\n<!-- /table -->\n")
    with pytest.raises(UserError, match="not in its records"):
        records.sync(root=tmp_path, results=results, write=False)


def test_a_figure_quoted_in_prose_is_checked_and_rewritten_from_its_records(tmp_path):
    """A prose figure (one cell, its row chosen by other columns) is held to its records like a table."""
    table = ("| forget | method | MIA AUC |\n|:--|:--|--:|\n| 3 | baseline | 0.613 ± 0.022 |\n"
             "| 3 | ssd | 0.540 ± 0.010 |\n\n| method | runs |\n|:--|--:|\n| ssd | 3 |\n")
    tables = {"fake": {"fake-table": table}}
    prose = "the attack reads AUC <!-- value: fake fake-table | method=baseline | MIA AUC -->{}<!-- /value --> here"
    assert records.render_blocks(prose.format("0.5"), tables, Path("doc")) == prose.format("0.613 ± 0.022")
    assert records.render_blocks(prose.format(""), tables, Path("doc")) == prose.format("0.613 ± 0.022")
    two_tables = "<!-- value: fake fake-table | method=ssd | runs -->x<!-- /value -->"
    assert records.render_blocks(two_tables, tables, Path("doc")) == two_tables.replace("x", "3")
    with pytest.raises(UserError, match="2 rows"):  # a row that the selector does not single out
        records.render_blocks("<!-- value: fake fake-table | forget=3 | MIA AUC -->x<!-- /value -->", tables, Path("d"))
    with pytest.raises(UserError, match="0 rows"):
        records.render_blocks("<!-- value: fake fake-table | method=lfssd | MIA AUC -->x<!-- /value -->", tables, Path("d"))
    with pytest.raises(UserError, match="not in its records"):
        records.render_blocks("<!-- value: fake other | method=ssd | runs -->x<!-- /value -->", tables, Path("d"))
    rounded = "AUC <!-- value: fake fake-table | method=ssd | MIA AUC | .2f -->{}<!-- /value -->"
    assert records.render_blocks(rounded.format("0.9"), tables, Path("doc")) == rounded.format("0.54 ± 0.01"), \
        "a format rounds every number of the cell, the spread too"
    mean = rounded.replace(".2f", "first .1f")
    assert records.render_blocks(mean.format("0.9"), tables, Path("doc")) == mean.format("0.5"), \
        "first: the leading number (the mean) alone"
    with pytest.raises(UserError, match="bad format"):
        records.render_blocks(rounded.replace(".2f", ".2q").format("x"), tables, Path("d"))
    no_number = ("| method | note |\n|:--|:--|\n| ssd | – |\n")
    with pytest.raises(UserError, match="has no number"):
        records.render_blocks("<!-- value: fake t | method=ssd | note | .0f -->x<!-- /value -->",
                              {"fake": {"t": no_number}}, Path("d"))


def test_the_check_finds_a_prose_figure_edited_by_hand(tmp_path):
    """``check`` and ``sync`` hold a prose figure to real committed records (the smallest folder, copied)."""
    results = records.RESULTS
    names = [p.name for p in results.iterdir() if (p / "runs").is_dir()] if results.is_dir() else []
    if not names:
        pytest.skip("no committed records yet")
    name = min(names, key=lambda n: sum(1 for _ in (results / n / "runs").rglob("*.json")))
    shutil.copytree(results / name / "runs", tmp_path / "results" / name / "runs")
    table_name, table = next(iter(records.tables_of(name, results=tmp_path / "results").items()))
    row = next(iter(records.markdown_rows(table)))
    last = list(row)[-1]
    selector = ", ".join(f"{k}={v}" for k, v in row.items() if k != last and v and not set(",=") & set(v))
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "README.md"
    doc.write_text(f"reads <!-- value: {name} {table_name} | {selector} | {last} -->edited<!-- /value -->.\n")
    assert records.sync(root=tmp_path, results=tmp_path / "results", write=False), "an edited figure must be reported"
    records.sync(root=tmp_path, results=tmp_path / "results", write=True)
    assert f"-->{row[last]}<!-- /value -->." in doc.read_text()
    assert records.sync(root=tmp_path, results=tmp_path / "results", write=False) == []


def test_export_copies_records_without_weights(tmp_path):
    sweep = tmp_path / "sweep"
    run = sweep / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / "results.json").write_text('{"status": "complete"}')
    (run / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    (run / "unlearned").mkdir()
    (run / "unlearned" / "model.safetensors").write_bytes(b"weights")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    target = records.export(sweep, "demo", results=tmp_path / "results", command="python unlearn.py -m seed=0")
    assert (target / "0" / "results.json").is_file() and (target / "0" / ".hydra" / "overrides.yaml").is_file()
    assert not list(Path(target).rglob("*.safetensors")), "weights never enter the records"
    assert (tmp_path / "results" / "demo" / "command.txt").read_text().startswith("python unlearn.py")


def _sweep_with_one_run(root: Path, seed: int) -> Path:
    run = root / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / "results.json").write_text(f'{{"status": "complete", "seed": {seed}}}')
    (run / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    return root


def test_export_in_parts_replaces_only_its_part(tmp_path):
    """A table swept one seed at a time keeps every exported part; re-exporting a part replaces just it."""
    results = tmp_path / "results"
    records.export(_sweep_with_one_run(tmp_path / "s0", 0), "table", results=results, part="seed-0")
    records.export(_sweep_with_one_run(tmp_path / "s1", 1), "table", results=results, part="seed-1")
    runs = results / "table" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["seed-0", "seed-1"]
    _sweep_with_one_run(tmp_path / "s0b" / "x", 2)
    records.export(tmp_path / "s0b", "table", results=results, part="seed-0")
    assert (runs / "seed-0" / "x" / "0" / "results.json").read_text().endswith("2}")
    assert not (runs / "seed-0" / "0").exists(), "the part's old runs are replaced"
    assert (runs / "seed-1" / "0" / "results.json").is_file(), "the other part stays"
    with pytest.raises(UserError, match="kept in parts"):
        records.export(tmp_path / "s1", "table", results=results)
    assert (runs / "seed-1").is_dir(), "a refused export deletes nothing"
    with pytest.raises(UserError, match="plain folder name"):
        records.export(tmp_path / "s1", "table", results=results, part="../escape")


def test_runs_exported_whole_with_free_names_are_not_parts(tmp_path):
    """Run folders may have any name (the challenge's are 0-baseline, 1-ssd, ...): exporting such a sweep
    whole again replaces it, and a part is refused beside runs exported whole instead of mixing with them."""
    results = tmp_path / "results"
    sweep = tmp_path / "challenge"
    for run in ("0-baseline", "1-ssd"):
        (sweep / run).mkdir(parents=True)
        (sweep / run / "challenge.json").write_text('{"status": "complete"}')
    records.export(sweep, "table", results=results)
    records.export(sweep, "table", results=results)  # not mistaken for a table kept in parts
    runs = results / "table" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["0-baseline", "1-ssd"]
    with pytest.raises(UserError, match="exported whole"):
        records.export(_sweep_with_one_run(tmp_path / "s0", 0), "table", results=results, part="seed-0")
    assert sorted(p.name for p in runs.iterdir()) == ["0-baseline", "1-ssd"], "a refused export changes nothing"


def test_a_bench_figure_is_read_from_the_bench_records_and_its_mistakes_named(tmp_path):
    """``<!-- bench: ENTRY PATH | FORMAT -->`` holds a ratio quoted from bench/results.json to that file."""
    bench = tmp_path / "results.json"
    bench.write_text('{"cpu": {"ssd": {"ssd_vs_bare": 1.00071}, "runs": [{"mb": 198.49}, {"mb": 211.25}]}}')
    text = "SSD / bare <!-- bench: cpu ssd.ssd_vs_bare | .3f -->{}<!-- /bench -->, <!-- bench: cpu runs.1.mb | .0f -->{}<!-- /bench --> MB"
    assert records.render_blocks(text.format("0.9", "7"), {}, Path("doc"), bench=bench) == text.format("1.001", "211")
    mistakes = [("cpu ssd.nothing | .3f", "has no 'ssd.nothing'"), ("gpu ssd.ssd_vs_bare | .3f", "no entry 'gpu'"),
                ("cpu ssd | .3f", "not a number"), ("cpu runs.5.mb | .1f", "stopped at '5'"),
                ("cpu ssd.ssd_vs_bare | .3q", "bad format")]
    for marker, message in mistakes:
        with pytest.raises(UserError, match=message):
            records.render_blocks(f"<!-- bench: {marker} -->x<!-- /bench -->", {}, Path("doc"), bench=bench)
    (tmp_path / "docs").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "results.json").write_text(bench.read_text())
    (tmp_path / "README.md").write_text(text.format("1.001", "212"))  # one figure edited by hand
    assert records.sync(root=tmp_path, results=tmp_path / "results", write=False), "an edited bench figure is found"
    records.sync(root=tmp_path, results=tmp_path / "results", write=True)
    assert (tmp_path / "README.md").read_text() == text.format("1.001", "211")


def test_a_run_figure_is_read_from_the_one_committed_run_its_overrides_select(tmp_path):
    """``<!-- record: NAME | key=value | PATH | FORMAT -->`` holds a per-seed figure to the run's results.json."""
    for number, (seed, identified, accuracy) in enumerate([(0, 0.1, 91.94), (1, 0.1, 35.28), (1, 0.5, 96.1)]):
        run = tmp_path / "results" / "poison" / "runs" / str(number)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- task.identified={identified}\n- seed={seed}\n")
        (run / "results.json").write_text(json.dumps({"method": "potion", "seed": seed,
                                                      "metrics": {"unlearned": {"test_acc": accuracy}}}))
    results = tmp_path / "results"
    text = "test <!-- record: poison | seed=1, task.identified=0.1 | metrics.unlearned.test_acc | .1f -->{}<!-- /record --> %"
    assert records.render_blocks(text.format("99"), {}, Path("doc"), results=results) == text.format("35.3")
    by_field = "<!-- record: poison | method=potion, seed=0 | metrics.unlearned.test_acc | .0f -->x<!-- /record -->"
    assert records.render_blocks(by_field, {}, Path("doc"), results=results).endswith("-->92<!-- /record -->")
    mistakes = [("poison | seed=1 | metrics.unlearned.test_acc | .1f", "2 runs"),
                ("poison | seed=7 | metrics.unlearned.test_acc | .1f", "0 runs"),
                ("poison | seed=0 | metrics.original.test_acc | .1f", "stopped at 'original'"),
                ("poison | seed=0 | metrics.unlearned | .1f", "not a number"),
                ("other | seed=0 | metrics.unlearned.test_acc | .1f", "do not exist"),
                ("poison | seed | metrics.unlearned.test_acc | .1f", "key=value")]
    for marker, message in mistakes:
        with pytest.raises(UserError, match=message):
            records.render_blocks(f"<!-- record: {marker} -->x<!-- /record -->", {}, Path("doc"), results=results)
    assert records.embedded(text), "sync and check must see a document whose only figure is a run's"


def test_a_count_of_runs_is_made_from_a_yes_no_field_of_the_runs_it_selects(tmp_path):
    """``<!-- count: NAME | key=value | PATH -->`` says "N of M": M the selected runs, N those true at PATH."""
    for number, (seed, identified, stopped) in enumerate([(0, 0.5, True), (1, 0.5, False), (2, 0.5, True),
                                                          (0, 0.1, "yes")]):
        run = tmp_path / "results" / "poison" / "runs" / str(number)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- task.identified={identified}\n- seed={seed}\n")
        (run / "results.json").write_text(json.dumps({"method": "potion", "seed": seed,
                                                      "method_info": {"guard": {"stopped": stopped}}}))
    results = tmp_path / "results"
    text = "stopped on <!-- count: poison | task.identified=0.5 | method_info.guard.stopped -->{}<!-- /count --> seeds"
    assert records.render_blocks(text.format("3 of 3"), {}, Path("doc"), results=results) == text.format("2 of 3")
    one = "<!-- count: poison | seed=1, task.identified=0.5 | method_info.guard.stopped -->x<!-- /count -->"
    assert records.render_blocks(one, {}, Path("doc"), results=results).endswith("-->0 of 1<!-- /count -->")
    mistakes = [("poison | seed=7 | method_info.guard.stopped", "no run of poison"),
                ("poison | task.identified=0.1 | method_info.guard.stopped", "not true or false"),
                ("poison | seed=1 | method_info.guard.kept", "stopped at 'kept'")]
    for marker, message in mistakes:
        with pytest.raises(UserError, match=message):
            records.render_blocks(f"<!-- count: {marker} -->x<!-- /count -->", {}, Path("doc"), results=results)
    assert records.embedded(text), "sync and check must see a document whose only figure is a count"


def test_a_malformed_marker_is_an_error_not_a_figure_left_unchecked():
    """A marker the syntax does not match (a space in a bench path, a missing column) would silently never
    be checked: it fails, naming its line; a marker quoted in backticks (documentation) is left alone."""
    broken = "fine\n<!-- bench: cpu ssd.a b | .3f -->1<!-- /bench -->\n"
    with pytest.raises(UserError, match=r"doc:2: a malformed <!-- bench"):
        records.render_blocks(broken, {}, Path("doc"))
    with pytest.raises(UserError, match=r"doc:1: a malformed <!-- value"):
        records.render_blocks("<!-- value: fake fake-table | MIA AUC -->x<!-- /value -->", {}, Path("doc"))
    quoted = "the syntax: `<!-- bench: ENTRY PATH | FORMAT -->` and `<!-- value: NAME TABLE | col=v | COLUMN -->`"
    assert records.render_blocks(quoted, {}, Path("doc")) == quoted
