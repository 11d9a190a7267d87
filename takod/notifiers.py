"""Delivers approval events to the app's `@tako.notifier` functions, at least once.

User code never runs in takod, so each event is delivered by a run of the
built-in `tako.notify` workflow (run id `notify:<key>:<n>`), which calls every
notifier as a step: a notifier that raises is retried on its own, with
backoff, without calling the others again. Events of one request go in order
(the next waits for the previous one to be delivered); requests go in
parallel. A failing notifier never blocks or fails the run that asked.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from tako._records import NOTIFY_WORKFLOW, RunView
from tako.takod.changes import Changes
from tako.takod.scheduler import Clock
from tako.takod.storage.interface import Backend

# (workflow, payload, run id) -> the run once finished: the service's run_internal
RunInternal = Callable[[str, bytes, str], Awaitable[RunView]]

TARGET = "notifiers"
# an event taken for delivery is another supervisor's again after this; delivering it
# twice is harmless: both wait on the one `tako.notify` run of that event
LEASE_MS = 60_000
BACKOFF_BASE, BACKOFF_CAP = 5.0, 600.0


class Notifiers:
    def __init__(
        self, backend: Backend, *, clock: Clock, changes: Changes, run_internal: RunInternal
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.changes = changes
        self.run_internal = run_internal
        self._kick = trio.Event()
        self._busy: set[str] = set()
        self._taking = False

    def kick(self) -> None:
        self._kick.set()

    def idle(self) -> bool:
        """Nothing taken from the outbox is still being delivered (a moved test clock
        waits for this: a taken event is no longer due, and its run may not exist yet)."""
        return not self._taking and not self._busy

    async def run(self) -> None:
        async with trio.open_nursery() as deliveries:
            while True:
                self._kick = trio.Event()
                now = self.clock.now_ms()
                self._taking = True
                try:
                    for event_id, body, attempts in await self.backend.write(
                        lambda tx: tx.take_events(TARGET, now, LEASE_MS)  # noqa: B023
                    ):
                        if event_id not in self._busy:
                            self._busy.add(event_id)
                            deliveries.start_soon(self._deliver, event_id, body, attempts)
                finally:
                    self._taking = False
                next_at = await self.backend.read(lambda r: r.next_attempt(TARGET))
                delay = 60.0 if next_at is None else max(0.0, (next_at - now) / 1000)
                with trio.move_on_after(delay):
                    await self._kick.wait()

    async def _deliver(self, event_id: str, body: bytes, attempts: int) -> None:
        try:
            run_id = "notify:" + event_id.replace("#", ":")
            run = await self.run_internal(NOTIFY_WORKFLOW, body, run_id)
            now = self.clock.now_ms()
            if run.status == "completed":
                await self.backend.write(lambda tx: tx.mark_delivered(TARGET, event_id, now))
                self.changes.delivered()  # its history may say `notified` now
            else:  # its own retries are used up: try the whole delivery again later
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempts, 20))
                delay *= 1 + random.uniform(-0.2, 0.2)
                error = str(run.error or run.status)
                next_at = now + int(delay * 1000)
                await self.backend.write(
                    lambda tx: tx.mark_failed(TARGET, event_id, error, next_at)
                )
        finally:
            self._busy.discard(event_id)
            self.kick()
