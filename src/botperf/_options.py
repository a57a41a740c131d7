"""Checks of constructor options, shared by every class: a bad option fails at once."""

from __future__ import annotations

import math

from ._exceptions import InvalidOptionError

__all__ = ["check_int_option", "check_number_option", "check_seconds_option"]


def check_int_option(owner: str, option: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``.

    Raises:
        InvalidOptionError: Otherwise, naming the owner, the option and the allowed range.
    """
    if type(value) is not int or value < minimum:
        raise InvalidOptionError(owner, option, value, f"an int of at least {minimum}")
    return value


def check_seconds_option(
    owner: str, option: str, value: object, *, allow_zero: bool = False
) -> float:
    """Return ``value`` as a float if it is a finite, positive number of seconds.

    ``allow_zero`` also accepts 0. Booleans are refused.

    Raises:
        InvalidOptionError: Otherwise, naming the owner, the option and the allowed range.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        allowed = "a finite number of seconds, " + ("0 or more" if allow_zero else "above 0")
        raise InvalidOptionError(owner, option, value, allowed)
    return float(value)


def check_number_option(owner: str, option: str, value: object, *, minimum: float = 0.0) -> float:
    """Return ``value`` as a float if it is a finite number above 0 (or at least ``minimum``).

    Raises:
        InvalidOptionError: Otherwise (booleans, NaN and infinities included).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
        or value < minimum
    ):
        allowed = "a finite number " + (f"of at least {minimum:g}" if minimum else "above 0")
        raise InvalidOptionError(owner, option, value, allowed)
    return float(value)
