from __future__ import annotations

import math

import pytest

from botperf import BotperfError, InvalidOptionError
from botperf._options import check_int_option, check_seconds_option


def test_invalid_option_error_names_owner_option_and_range() -> None:
    error = InvalidOptionError("Thing", "size", 0, "an int of at least 1")
    assert str(error) == "Thing(size=0): size must be an int of at least 1"
    assert (error.owner, error.option, error.value) == ("Thing", "size", 0)


def test_invalid_option_error_is_caught_as_value_and_type_error() -> None:
    for kind in (BotperfError, ValueError, TypeError):
        with pytest.raises(kind):
            check_int_option("Thing", "size", 0, minimum=1)


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", True, None])
def test_int_option_rejects_non_ints_and_values_below_minimum(value: object) -> None:
    with pytest.raises(InvalidOptionError, match=r"size must be an int of at least 1"):
        check_int_option("Thing", "size", value, minimum=1)


def test_int_option_returns_a_valid_int() -> None:
    assert check_int_option("Thing", "size", 3, minimum=1) == 3


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, "1", False])
def test_seconds_option_rejects_non_positive_and_non_finite(value: object) -> None:
    with pytest.raises(InvalidOptionError, match="a finite number of seconds, above 0"):
        check_seconds_option("Thing", "delay", value)


def test_seconds_option_may_allow_zero() -> None:
    assert check_seconds_option("Thing", "delay", 0, allow_zero=True) == 0.0
    with pytest.raises(InvalidOptionError, match="0 or more"):
        check_seconds_option("Thing", "delay", -1, allow_zero=True)


def test_seconds_option_returns_a_float() -> None:
    assert check_seconds_option("Thing", "delay", 2) == 2.0
