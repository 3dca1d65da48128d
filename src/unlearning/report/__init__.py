"""Tables and figures from unlearning runs: ``python -m unlearning.report PATH [PATH ...]``.

``collect`` finds results.json files (and runs without them), ``tables`` makes the paper's
tables (mean ± std over seeds), ``figures`` the PNGs, ``write`` the report folder.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``unlearning-report`` console script (see ``__main__``)."""
    from unlearning.report.__main__ import main as run

    return run(argv)
