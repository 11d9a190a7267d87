"""Durations, sizes and retry backoff as the docs define them."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tako._durations import (
    BACKOFF_CAP,
    backoff_seconds,
    parse_duration,
    parse_size,
)

# -- parse_duration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("2d", 172_800.0),
        ("1w", 604_800.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 86_400 + 7200 + 180 + 4 + 0.005),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        (" 30s ", 30.0),
        ("10m5s", 605.0),
    ],
)
def test_duration_text(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_ms_is_milliseconds_not_minutes_then_seconds() -> None:
    assert parse_duration("10ms") == pytest.approx(0.01)
    assert parse_duration("10m") == 600.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (30, 30.0), (1.5, 1.5), ("30", 30.0), ("2.5", 2.5), ("0", 0.0)],
)
def test_duration_numbers_and_numeric_strings(value: float | str, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == seconds


def test_duration_timedelta() -> None:
    assert parse_duration(timedelta(days=2, minutes=1)) == 2 * 86_400 + 60
    assert parse_duration(timedelta(milliseconds=250)) == 0.25


@pytest.mark.parametrize(
    "text",
    ["", "s", "abc", "1x", "30S", "1h 30m", "5m10", "1mm", "h1", "10 sec", "--1s", "1.s"],
)
def test_bad_duration_text_raises_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("value", [-1, -0.5, "-1", "-5s", timedelta(seconds=-1)])
def test_negative_durations_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["inf", "nan", float("inf"), float("nan"), "1e999"])
def test_non_finite_durations_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False, None, [30], {"s": 1}, b"30s"])
def test_non_duration_types_are_rejected(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_huge_integer_duration_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration(10**400)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=20))
def test_any_text_parses_to_a_finite_duration_or_raises_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert repr(text) in str(exc)
    else:
        assert math.isfinite(seconds)
        assert seconds >= 0


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["ms", "s", "m", "h", "d", "w"])),
        min_size=1,
        max_size=6,
    )
)
def test_combined_units_add_up(parts: list[tuple[int, str]]) -> None:
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))


# -- parse_size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1MiB", 1024**2),
        ("512KiB", 512 * 1024),
        ("2MB", 2_000_000),
        ("1GiB", 1024**3),
        ("3KB", 3000),
        ("100B", 100),
        ("100", 100),
        ("1 MiB", 1024**2),
        ("1mib", 1024**2),
        ("0.5KiB", 512),
        (1_048_576, 1_048_576),
        (1, 1),
    ],
)
def test_sizes(value: str | int, size: int) -> None:
    result = parse_size(value)
    assert isinstance(result, int)
    assert result == size


@pytest.mark.parametrize(
    "value", ["", "MiB", "1TB", "1 MiB extra", "-1MiB", "abc", 0, -5, "0", "0.1B", True]
)
def test_bad_sizes_raise_value_error_naming_them(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_absurdly_large_size_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse_size("9" * 400)


# -- backoff_seconds --------------------------------------------------------------------


def _bounds(attempt: int) -> tuple[float, float]:
    base = min(BACKOFF_CAP, 2.0 ** (attempt - 1))
    return base * 0.8, min(BACKOFF_CAP, base * 1.2)


def test_backoff_starts_at_one_second_and_doubles() -> None:
    rng = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (10, 512), (12, 2048)]:
        delays = [backoff_seconds(attempt, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays), (attempt, delays)
        # the jitter really spreads over most of ±20 %, on both sides of the base
        assert min(delays) < base * 0.85
        assert max(delays) > base * 1.15


def test_backoff_is_capped_at_one_hour() -> None:
    rng = random.Random(3)
    delays = [backoff_seconds(attempt, rng) for attempt in range(13, 41) for _ in range(20)]
    assert max(delays) <= 3600.0
    assert min(delays) >= 3600.0 * 0.8
    assert BACKOFF_CAP == 3600.0


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    first = [backoff_seconds(a, random.Random(42)) for a in range(1, 20)]
    second = [backoff_seconds(a, random.Random(42)) for a in range(1, 20)]
    assert first == second
    assert first != [backoff_seconds(a, random.Random(43)) for a in range(1, 20)]


def test_backoff_for_attempt_zero_or_below_uses_the_base() -> None:
    rng = random.Random(1)
    assert 0.8 <= backoff_seconds(0, rng) <= 1.2
    assert 0.8 <= backoff_seconds(-3, rng) <= 1.2


@settings(max_examples=300, deadline=None, database=None)
@given(attempt=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_backoff_property(attempt: int, seed: int) -> None:
    low, high = _bounds(attempt)
    delay = backoff_seconds(attempt, random.Random(seed))
    assert low <= delay <= high
    assert 0.8 <= delay <= 3600.0
    if attempt > 1:
        # never shorter than the previous attempt's shortest possible delay
        assert delay >= _bounds(attempt - 1)[0]


def test_backoff_is_capped_for_very_late_attempts() -> None:
    # reachable with @workflow(retries=2000) or step.run(..., retries=2000)
    assert 2880.0 <= backoff_seconds(1025, random.Random(0)) <= 3600.0
