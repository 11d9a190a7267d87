"""One timer for everything that falls due: sleeps, wait timeouts, retry backoffs, deadlines.

The scheduler keeps only the next due time (the store's indexed MIN), sleeps
until then or until something earlier is scheduled (`note`), and moves every
due run on in one transaction. A million sleeping runs cost index entries,
not memory or tasks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from tako._errors import StorageError

log = logging.getLogger("takod")
SAFETY_SWEEP = 60.0  # seconds: re-read the next due time at least this often


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


class OffsetClock:
    """Wall time corrected by an offset: where supervisors on several hosts share one
    database, its clock is theirs (the offset is measured against it every lease)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


class ManualClock:
    """A clock that stands still until it is moved: tako.testing's, so that a test, not
    the wall, decides when a day has passed (see takod/advance.py)."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.at_ms = int(time.time() * 1000) if start_ms is None else start_ms

    def now_ms(self) -> int:
        return self.at_ms


class TrioClock:
    """Wall time that follows trio's clock: with MockClock, tests jump days in no time."""

    def __init__(self, epoch_ms: int = 1_800_000_000_000) -> None:
        self.epoch_ms = epoch_ms

    def now_ms(self) -> int:
        return self.epoch_ms + int(trio.current_time() * 1000)


class Scheduler:
    def __init__(
        self,
        clock: Clock,
        next_wake: Callable[[], Awaitable[int | None]],
        wake_due: Callable[[int], Awaitable[None]],
    ) -> None:
        self.clock = clock
        self._next_wake = next_wake
        self._wake_due = wake_due
        self._scope: trio.CancelScope | None = None
        self._noted: int | None = None
        self.target_ms: int | None = None
        self.tell: Callable[[int], None] = lambda at: None  # other supervisors' timers

    def note(self, wake_at_ms: int | None, *, told: bool = False) -> None:
        """Something falls due at `wake_at_ms`: wake earlier than planned if need be
        (and tell the other supervisors, unless one of them `told` us)."""
        if wake_at_ms is None:
            return
        if not told:
            self.tell(wake_at_ms)
        self._noted = wake_at_ms if self._noted is None else min(self._noted, wake_at_ms)
        # due already: wake now, even for a target noted before (a clock that was moved)
        due_now = wake_at_ms <= self.clock.now_ms()
        if self.target_ms is None or wake_at_ms < self.target_ms or due_now:
            self.target_ms = min(wake_at_ms, self.target_ms or wake_at_ms)
            if self._scope is not None:
                self._scope.deadline = min(self._scope.deadline, self._trio_time(wake_at_ms))

    def _trio_time(self, at_ms: int) -> float:
        return trio.current_time() + (at_ms - self.clock.now_ms()) / 1000

    async def run(self) -> None:
        while True:
            now = self.clock.now_ms()
            if self.target_ms is not None and self.target_ms <= now:
                try:
                    await self._wake_due(now)
                except StorageError as exc:  # a full disk: nothing was moved; try again soon
                    log.warning("could not wake due runs (%s); retrying in 1s", exc)
                    await trio.sleep(1)
                    continue
            self._noted = None  # notes that arrive while we read still count
            found = await self._next_wake()
            due = [t for t in (found, self._noted) if t is not None]
            self.target_ms = min(due) if due else None
            sleep_until = self.clock.now_ms() + int(SAFETY_SWEEP * 1000)
            if self.target_ms is not None:
                sleep_until = min(sleep_until, self.target_ms)
            with trio.move_on_at(self._trio_time(sleep_until)) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
