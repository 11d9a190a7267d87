"""Durations and sizes as users write them: "500ms", "1h30m", 30, timedelta(days=2), "1MiB".

Shared by the SDK (step.sleep, wait_for timeouts), the client (delay, ttl) and
takod's configuration, so a duration means the same thing everywhere.
"""

from __future__ import annotations

import math
import random
import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}

Duration = str | int | float | timedelta


def parse_duration(value: Duration) -> float:
    """Return the duration in seconds; raise ValueError naming the bad text."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected text like '30s' or a number")
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"invalid duration {value!r}: too large") from None
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"invalid duration {value!r}: expected text like '30s' or a number")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"invalid duration {value!r}: must be a finite number of seconds >= 0")
    return seconds


def _parse_text(text: str) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _PART.finditer(stripped):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(stripped):
        raise ValueError(
            f"invalid duration {text!r}: use a number of seconds or units ms, s, m, h, d, w "
            "(e.g. '500ms', '30s', '1h30m', '7d')"
        )
    return total


def parse_size(value: str | int) -> int:
    """Return a size in bytes from 1048576, "1MiB", "512KiB" or "2MB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"invalid size {value!r}: must be positive")
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"invalid size {value!r}: use bytes or units KiB, MiB, GiB (e.g. '1MiB')")
    amount = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if not math.isfinite(amount) or amount < 1:
        raise ValueError(f"invalid size {value!r}: must be positive")
    return int(amount)


BACKOFF_BASE = 1.0
BACKOFF_CAP = 3600.0
JITTER = 0.2


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Delay after failed attempt `attempt`: 1 s doubling, ±20 % jitter, at most 1 h."""
    base = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(max(0, attempt - 1), 32))
    jitter: float = (rng or random).uniform(-JITTER, JITTER)
    return min(BACKOFF_CAP, base * (1 + jitter))
