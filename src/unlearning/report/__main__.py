"""``python -m unlearning.report PATH [PATH ...] [--out DIR]``: tables and figures from results.json files.

Collects every unlearning run under the paths (multirun folders, run folders, results.json
files; several multiruns merge into one table per experiment and model) and writes, in
``--out`` (default ``<first PATH>/report``): ``report.md`` with every table and figure, one
``<experiment>-<model>.md``/``.csv`` per table, ``figures/*.png``, ``runs.csv`` (one row per
run) and ``missing.csv`` (runs without complete results). Exit status 2 when nothing is found.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from unlearning.cli import fail
from unlearning.errors import UserError

#: Missing runs printed on the terminal; all of them are in report.md and missing.csv.
SHOW_MISSING = 10


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unlearning.report", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="multirun folder, run folder or results.json (several merge)")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write (default: <first PATH>/report)")
    return parser.parse_args(argv)


def default_out(path: str) -> Path:
    first = Path(path).expanduser()
    return (first if first.is_dir() else first.parent) / "report"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from unlearning.report.write import write_report  # pandas and matplotlib only when needed

    out = Path(args.out).expanduser() if args.out else default_out(args.paths[0])
    try:
        report = write_report(args.paths, out)
    except UserError as error:
        fail(str(error))
    for group, table in report.tables.items():
        print(f"\n{group}\n{table}")
    if report.missing:
        print(f"\n{len(report.missing)} run(s) without complete results (see {out / 'report.md'}):")
        for missing in report.missing[:SHOW_MISSING]:
            print(f"  {missing.where}  {' '.join(missing.overrides)}  -- {missing.reason}")
        if len(report.missing) > SHOW_MISSING:
            print(f"  ... and {len(report.missing) - SHOW_MISSING} more in {out / 'missing.csv'}")
    print(f"\n{report.runs} runs, {len(report.tables)} table(s), {len(report.figures)} figure(s): "
          f"{out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
