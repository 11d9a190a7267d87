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
from typing import TYPE_CHECKING

import trio

from takod.webhook import due_events, mark_delivered, mark_failed, next_attempt
from worker_runtime.registry import NOTIFY_WORKFLOW

if TYPE_CHECKING:
    from takod.supervisor import Supervisor

TARGET = "notifiers"
BACKOFF_BASE, BACKOFF_CAP = 5.0, 600.0


class Notifiers:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self._kick = trio.Event()
        self._busy: set[str] = set()

    def kick(self) -> None:
        self._kick.set()

    async def run(self) -> None:
        async with trio.open_nursery() as deliveries:
            while True:
                self._kick = trio.Event()
                now = self.sup.clock.now_ms()
                for event_id, body, attempts in await self.sup._read(due_events, TARGET, now):
                    if event_id not in self._busy:
                        self._busy.add(event_id)
                        deliveries.start_soon(self._deliver, event_id, bytes(body), attempts)
                next_at = await self.sup._read(next_attempt, TARGET)
                delay = 60.0 if next_at is None else max(0.0, (next_at - now) / 1000)
                with trio.move_on_after(delay):
                    await self._kick.wait()

    async def _deliver(self, event_id: str, body: bytes, attempts: int) -> None:
        sup = self.sup
        try:
            run_id = "notify:" + event_id.replace("#", ":")
            run = await sup.run_internal(NOTIFY_WORKFLOW, body, run_id)
            now = sup.clock.now_ms()
            if run["status"] == "completed":
                await sup._write(mark_delivered, sup.store.conn, TARGET, event_id, now)
                sup.access.approvals_changed()  # its history may say `notified` now
            else:  # its own retries are used up: try the whole delivery again later
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempts, 20))
                delay *= 1 + random.uniform(-0.2, 0.2)
                error = str(run.get("error") or run["status"])
                await sup._write(
                    mark_failed, sup.store.conn, TARGET, event_id, error, now + int(delay * 1000)
                )
        finally:
            self._busy.discard(event_id)
            self.kick()
