"""Turning a class given by name, alias or index into an index, with helpful errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from unlearning.errors import UserError


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def resolve_class(
    target: str | int,
    names: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    what: str = "class",
    dataset: str = "",
) -> int:
    """Index of ``target`` in ``names``.

    ``target`` may be a name (case and ``-``/``_``/space insensitive), an alias from
    ``aliases`` (e.g. the SSD paper's short CIFAR-20 names), or an integer index. Names win
    over indices, so digit names ``"0"``..``"9"`` resolve by name.
    """
    lookup = {_normalise(n): i for i, n in enumerate(names)}
    for alias, real in (aliases or {}).items():
        if _normalise(real) in lookup:
            lookup.setdefault(_normalise(alias), lookup[_normalise(real)])
    key = _normalise(str(target))
    if key in lookup:
        return lookup[key]
    if isinstance(target, int) or key.lstrip("-").isdigit():
        index = int(target)
        if 0 <= index < len(names):
            return index
        raise UserError(
            f"{what} index {index} is out of range for {dataset or 'this dataset'}: "
            f"valid indices are 0..{len(names) - 1}, or one of the names: {_listing(names)}."
        )
    alias_text = ""
    if aliases:
        alias_text = " Aliases: " + ", ".join(f"{a} -> {r}" for a, r in aliases.items()) + "."
    raise UserError(
        f"unknown {what} {target!r} for {dataset or 'this dataset'}. "
        f"Valid names: {_listing(names)}.{alias_text} An index 0..{len(names) - 1} works too."
    )


def _listing(names: Sequence[str], limit: int = 120) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
