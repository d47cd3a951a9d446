from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.durations import format_go_duration, parse_go_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1m30.5s", 90.5),
        ("0", 0.0),
        ("-2m", -120.0),
        ("2h45m10s", 9910.0),
    ],
)
def test_go_durations_are_parsed_to_seconds(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2", "2 m", "2min", "m", "", "1h 30m", "PT2M", "1d", "30S", "2m-1s"])
def test_non_go_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="Go-style duration"):
        parse_go_duration(text)


@given(st.integers(min_value=1, max_value=10 * 24 * 3600))
def test_formatting_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_go_duration(format_go_duration(seconds)) == seconds
