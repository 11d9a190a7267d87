"""Small text helpers shared by every renderer: colours, times, durations, previews.

All of them are pure: the current time, the time zone and whether to colour
are parameters, so the renderers built on them are tested without a clock
or a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, tzinfo
from typing import Any

import click

STATUS_COLOURS = {
    "pending": "white",
    "running": "blue",
    "sleeping": "cyan",
    "waiting": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def use_colour() -> bool:
    """Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class Paint:
    """`click.style`, or the plain text when colour is off (pipes, files, tests)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, fg: str | None = None, *, bold: bool = False) -> str:
        if not self.enabled:
            return text
        return click.style(text, fg=fg, bold=bold or None)

    def dim(self, text: str) -> str:
        return click.style(text, dim=True) if self.enabled else text

    def status(self, status: str, text: str | None = None) -> str:
        return self(text if text is not None else status, STATUS_COLOURS.get(status), bold=True)


def parse_ts(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp from takod (`...Z`) as an aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value)


def local_time(value: str | datetime | None, now: datetime, tz: tzinfo | None = None) -> str:
    """Short local time: `14:03:07` today, `Nov 28 14:03` this year, else the full date."""
    when = parse_ts(value) if isinstance(value, str) or value is None else value
    if when is None:
        return "-"
    local, today = when.astimezone(tz), now.astimezone(tz)
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    if local.year == today.year:
        return local.strftime("%b %d %H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def duration_text(seconds: float) -> str:
    """`13 ms`, `1.98 s`, `2m 52s`, `3h 04m`, `2d 03h`, `7d`: precise when short, rounded after."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for size, unit, minor_size, minor_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "m"),
        (60, "m", 1, "s"),
    ):
        if whole >= size:
            major, minor = whole // size, whole % size // minor_size
            return f"{major}{unit} {minor:02d}{minor_unit}" if minor else f"{major}{unit}"
    return f"{whole}s"


def spec_duration(seconds: float) -> str:
    """A configured duration in the units users write: `1h30m`, `30s`, `500ms`."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = ""
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    if ms:
        out += f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:g}s" if ms > 1000 else f"{ms}ms"
    return out


def relative(value: str | datetime | None, now: datetime) -> str:
    """`in 7d 0h` or `2m 05s ago`."""
    when = parse_ts(value) if isinstance(value, str) or value is None else value
    if when is None:
        return "-"
    delta = (when - now).total_seconds()
    if abs(delta) < 0.001:
        return "now"
    return f"in {duration_text(delta)}" if delta > 0 else f"{duration_text(-delta)} ago"


def when_text(value: str | None, now: datetime, tz: tzinfo | None = None) -> str:
    """`Nov 28 14:03 (in 7d 0h)`: the moment and how far away it is."""
    if not value:
        return "-"
    return f"{local_time(value, now, tz)} ({relative(value, now)})"


def between(start: str | None, end: str | None) -> float | None:
    """Seconds from `start` to `end`, or None when either is missing."""
    a, b = parse_ts(start), parse_ts(end)
    if a is None or b is None:
        return None
    return (b - a).total_seconds()


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def preview(value: Any, width: int = 60) -> str:
    """A value as one line of JSON, cut to `width` characters with an ellipsis."""
    return truncate(compact_json(value), width)


def truncate(text: str, width: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    if line != text.strip() or len(line) > width:
        return line[: max(1, width - 1)].rstrip() + "…"
    return line


def table(rows: list[list[str]], header: list[str], paint: Paint, status_col: int = -1) -> str:
    """Left-aligned columns; the status column is coloured after padding, so widths hold."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines[0] = paint.dim(lines[0])
    for row in rows:
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(w) if i < len(row) - 1 else cell
            cells.append(paint.status(cell, padded) if i == status_col else padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
