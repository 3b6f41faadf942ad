"""Serving-time checks of a history (deepm3.history): query times are unix seconds in int64."""

from __future__ import annotations

import pytest

from deepm3.errors import DataError
from deepm3.history import to_seconds


@pytest.mark.parametrize("value", ["99999999999999999999", 99999999999999999999, "1e19", 2**63, -1, "-5"])
def test_serving_times_outside_int64_seconds_or_negative_are_one_line(value) -> None:
    with pytest.raises(DataError, match=r"at=.*expected a non-negative integer number of unix seconds below 2\^63"):
        to_seconds(value, "at")


def test_a_serving_time_just_inside_the_range_is_accepted() -> None:
    assert to_seconds(2**63 - 1, "at") == 2**63 - 1 and to_seconds("0", "at") == 0
