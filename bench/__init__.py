"""Benchmarks (not part of the installed package): ``python -m bench`` (``make bench``) and
``python -m bench.recipe`` (``make recipe``), run from the repository root."""
