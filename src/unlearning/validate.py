"""Settings that must be numbers, checked where they are read, with the config key in the message."""

from __future__ import annotations

import math
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


def positive_number(value: Any, key: str, hint: str = "") -> float:
    """``value`` as a finite float > 0, or a :class:`UserError` naming ``key``."""
    number = _as_float(value)
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"{key} must be a positive number, got {value!r}.{' ' + hint if hint else ''}")
    return number
