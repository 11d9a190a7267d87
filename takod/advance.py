"""Moving a stopped clock, for tests: fire what falls due, in order, and wait it out.

A supervisor started with a `ManualClock` (tako.testing does) never sees time
pass on its own. `advance` moves the clock to each due moment in turn up to
the target (a sleep's end, a wait's timeout, an approval's reminder,
escalation or deadline, a retry's backoff), wakes what is due there, and
waits until every run it woke has parked again or finished before it looks
for the next one. So a run that sleeps an hour twice inside one
`advance("1d")` wakes at 1h and at 2h, exactly as it would in production.
"""

from __future__ import annotations

import trio

from tako._errors import TakoError
from tako._records import iso
from tako.takod.scheduler import ManualClock
from tako.takod.supervisor import Supervisor

POLL = 0.005  # seconds between looks while runs are still moving
MAX_MOMENTS = 100_000  # due moments one advance may visit: a guard against a loop


class NotSettled(TakoError):
    """Runs were still running when a test's patience ran out."""


async def settle(supervisor: Supervisor, timeout: float) -> None:
    """Return once no run is running or ready to run and no approval event waits to
    be delivered; NotSettled naming the busy runs after `timeout` seconds."""
    service, clock, targets = supervisor.service, supervisor.clock, supervisor.events.targets
    deadline = trio.current_time() + timeout
    while True:
        now = clock.now_ms()
        busy = await service.read(lambda r: r.busy(now))  # noqa: B023
        events = 0
        for target in targets:
            events += len(await service.read(lambda r: r.due_events(target, now)))  # noqa: B023
        delivering = not supervisor.notifiers.idle() or not (
            supervisor.webhook is None or supervisor.webhook.idle()
        )
        if not busy and not events and not delivering:
            return
        if trio.current_time() >= deadline:
            parts = [f"runs {', '.join(busy)} still running"] if busy else []
            parts += [f"{events} approval events undelivered"] if events else []
            parts += ["approval events being delivered"] if delivering else []
            raise NotSettled(
                f"{' and '.join(parts)} after {timeout:g}s: a step that never returns, or a"
                " worker that cannot start (see the log above)"
            )
        await trio.sleep(POLL)


async def advance(supervisor: Supervisor, to_ms: int, timeout: float) -> int:
    """Move the clock to `to_ms`, firing every due moment on the way in order; returns
    how many moments fired."""
    clock = supervisor.clock
    if not isinstance(clock, ManualClock):
        raise TypeError("only a supervisor on a ManualClock can be advanced")
    await settle(supervisor, timeout)
    fired = 0
    while True:
        due = await supervisor.service.next_wake()
        if due is None or due > to_ms:
            break
        if fired >= MAX_MOMENTS:
            raise NotSettled(f"still firing at {iso(due)} after {fired} due moments")
        clock.at_ms = max(clock.at_ms, due)
        await supervisor.service.wake_due(clock.at_ms)
        fired += 1
        await settle(supervisor, timeout)
    clock.at_ms = max(clock.at_ms, to_ms)
    await settle(supervisor, timeout)
    return fired
