"""Who hears that something changed: `wait` and `watch` requests, deliveries, `tako dev`,
and the counts behind `GET /metrics`.

One small hub that every layer is handed, so none of them needs a reference
to the supervisor: the worker link says a run changed, the service says an
approval did, and whoever waits on either is woken (never by polling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from tako.takod.metrics import Metrics

EventHook = Callable[[str, dict[str, Any]], None]


class Changes:
    def __init__(self, on_event: EventHook | None = None) -> None:
        self.on_event = on_event
        self.metrics = Metrics()  # what `GET /metrics` reads: every layer counts here
        self.runs: dict[str, set[trio.Event]] = {}  # run id -> its waiters
        self.approvals: set[trio.Event] = set()  # waiters on any approval
        self._deliveries: list[Callable[[], None]] = []
        # tells the other supervisors on a shared store (kind, arg); see Backend.tell
        self.tell: Callable[[str, str], None] = lambda kind, arg: None

    def emit(self, what: str, **fields: Any) -> None:
        """A line for `tako dev`'s log (and the tests' event hook)."""
        if self.on_event is not None:
            self.on_event(what, fields)

    def on_approvals(self, kick: Callable[[], None]) -> None:
        """Call `kick` whenever approval events may wait in the outbox (a delivery)."""
        self._deliveries.append(kick)

    def run_changed(self, run_id: str, *, told: bool = False) -> None:
        """Wake whoever waits on this run (`wait`, `watch`): a step, a park, an end;
        here, and (unless another supervisor `told` us) on the other supervisors."""
        for event in self.runs.get(run_id, ()):
            event.set()
        if not told:
            self.tell("run", run_id)

    def run_finished(self, run_id: str, status: str = "", error: str | None = None) -> None:
        self.run_changed(run_id)
        if status:
            self.metrics.run_finished(status)
            self.emit(status, run_id=run_id, error=error)

    def approvals_changed(self, *, told: bool = False) -> None:
        """Approval events may wait in the outbox, and approval pages may be stale."""
        for kick in self._deliveries:
            kick()
        self.delivered()
        if not told:
            self.tell("approvals", "")

    def delivered(self) -> None:
        """An event was delivered: a request's history may say `notified` now."""
        for event in self.approvals:
            event.set()

    def watch(self, run_id: str | None, event: trio.Event) -> None:
        """Set `event` when the run changes (or, with None, when any approval does)."""
        if run_id is None:
            self.approvals.add(event)
        else:
            self.runs.setdefault(run_id, set()).add(event)

    def unwatch(self, run_id: str | None, event: trio.Event) -> None:
        if run_id is None:
            self.approvals.discard(event)
            return
        watchers = self.runs.get(run_id)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self.runs[run_id]
