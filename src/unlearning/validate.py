"""Checks of config values, made where they are read, with the config key in the message.

One module for them, so that every setting fails the same way: a :class:`UserError` that
names the key and the value given, before any work is done (no ``int('abc')`` traceback).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from unlearning.errors import UserError


def _as_float(value: Any) -> float:
    """``value`` as a float, NaN when it is not a number (booleans included: ``true`` is no batch size)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def whole_number(value: Any, key: str, minimum: int = 1, hint: str = "") -> int:
    """``value`` as an int >= ``minimum``; a :class:`UserError` naming ``key`` otherwise (no ``int('abc')`` traceback)."""
    number = _as_float(value)
    if not math.isfinite(number) or not number.is_integer() or number < minimum:
        raise UserError(f"{key} must be a whole number >= {minimum}, got {value!r}.{' ' + hint if hint else ''}")
    return int(number)


def positive_number(value: Any, key: str, hint: str = "", allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), or a :class:`UserError` naming ``key``."""
    number = _as_float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        what = "a number >= 0" if allow_zero else "a positive number"
        raise UserError(f"{key} must be {what}, got {value!r}.{' ' + hint if hint else ''}")
    return number


def positive_numbers(prefix: str, **values: Any) -> None:
    """Each value must already be a number > 0 (``method.lr=0.1``, not ``"0.1"``): for arguments used as given.

    Unlike :func:`positive_number`, nothing is converted: a method stores its arguments and
    hands them to torch, which would fail later, and less clearly, on a string.
    """
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise UserError(f"{prefix}{key} must be a positive number, got {value!r}.")


def boolean(value: Any, key: str) -> bool:
    """``value`` when it is true or false; a :class:`UserError` naming ``key`` otherwise (``"maybe"`` is not ``True``)."""
    if not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {value!r}.")
    return value


def one_of(value: Any, key: str, choices: Sequence[str], hint: str = "") -> Any:
    """``value`` when it is one of ``choices``; a :class:`UserError` listing them otherwise."""
    if value not in choices:
        raise UserError(f"{key}={value!r} is unknown; valid: {', '.join(choices)}{' ' + hint if hint else ''}.")
    return value
