"""When a cron schedule's runs fall due: the ticks of a schedule, and which of them to
start after a pause (pure: no clock, no store). The worker checks a schedule when
`@workflow(schedule=...)` is applied; takod computes the ticks.

Ticks are computed by cronsim in the schedule's time zone, so "0 9 * * MON" in
Europe/Paris is 09:00 Paris time in winter and in summer. Across daylight-saving
changes cronsim behaves as cronie does: a time skipped by the spring change
runs right after the gap (02:30 on that night runs at 03:00), and a time that
occurs twice in the autumn runs once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CatchUp = Literal["latest", "all", "none"]
CATCH_UPS = ("latest", "all", "none")
MAX_CATCH_UP = 1000  # ticks started at once after a long pause with catch_up="all"
ON_TIME_MS = 60_000  # catch_up="none" still starts a tick this late (a slow restart)


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says which and why."""


def check(expression: str, timezone: str) -> None:
    """Raise ScheduleError naming what is wrong with a schedule."""
    zone = _zone(timezone)
    try:
        CronSim(expression, datetime.now(zone))
    except CronSimError as exc:
        raise ScheduleError(
            f"schedule {expression!r} is not a valid cron expression: {exc}"
        ) from None


def next_tick(expression: str, timezone: str, after_ms: int) -> int:
    """The first tick strictly after `after_ms` (ms since the epoch)."""
    start = datetime.fromtimestamp(after_ms / 1000, _zone(timezone))
    return int(next(CronSim(expression, start)).timestamp() * 1000)


def ticks_due(
    expression: str, timezone: str, next_at: int, now: int, catch_up: str
) -> tuple[list[int], int]:
    """The ticks to start now (`next_at` is the first not yet started) and the next one
    after them. `latest`: only the most recent of the ticks due; `all`: every one (up
    to MAX_CATCH_UP, the most recent); `none`: only a tick that is on time."""
    due: list[int] = []
    tick = next_at
    while tick <= now:
        due.append(tick)
        if len(due) > MAX_CATCH_UP:
            due.pop(0)
        tick = next_tick(expression, timezone, tick)
    if catch_up == "latest":
        due = due[-1:]
    elif catch_up == "none":
        due = [t for t in due[-1:] if now - t <= ON_TIME_MS]
    return due, tick


def tick_text(tick_ms: int) -> str:
    """A tick as its run id says it: ISO 8601 UTC to the second (`...T09:00:00Z`)."""
    return datetime.fromtimestamp(tick_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {timezone!r} (an IANA name, e.g. Europe/Paris)"
        ) from None
