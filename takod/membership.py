"""This supervisor among those serving the app: it joins, renews its lease, recovers others'.

Every supervisor registers in the store and renews its heartbeat every third
of `[workers] lease`. On PostgreSQL several share the database: a run's claim
names the supervisor holding it, and a supervisor silent past the lease is
gone: each live one, at each renewal, puts the runs the gone one held back in
the queue (their tokens move on, so the gone one's workers can no longer
write), and sweeps the queue for ready runs nobody holds in memory. A
supervisor declared gone that comes back (it was cut off from the database)
joins again under a new id. On SQLite one supervisor owns the store: at start
it takes back every run left running, at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable

import trio

from tako._errors import StorageError, TakoError
from tako.takod.changes import Changes
from tako.takod.scheduler import Clock, OffsetClock, Scheduler
from tako.takod.storage.interface import Backend

log = logging.getLogger("takod")


class Membership:
    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock,
        changes: Changes,
        lease: float,
        shared: bool,
        requeue: Callable[[list[str]], None],
        workers: Callable[[], int],
        held: Callable[[], set[str]],
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.changes = changes
        self.lease_ms = int(lease * 1000)
        self.shared = shared  # several supervisors may serve this store
        self._requeue = requeue
        self._workers = workers
        self._held = held  # the runs this supervisor's workers hold now
        self.me: int | None = None  # this supervisor's id: the owner of its claims
        self._sweep_soon = trio.Event()  # another supervisor said runs are ready

    async def join(self) -> None:
        """Register, then take back the runs that supervisors now gone left running."""
        await self.calibrate()
        host, pid, now = socket.gethostname(), os.getpid(), self.clock.now_ms()
        self.me = await self.backend.write(lambda tx: tx.join(host, pid, now))
        lease = self.lease_ms if self.shared else None
        await self.backend.write(lambda tx: tx.recover(now, lease))
        await self.sweep()

    async def sweep(self) -> None:
        """Queue every run that is ready now (the safety net for runs nobody holds)."""
        now = self.clock.now_ms()
        self._requeue(await self.backend.write(lambda tx: tx.ready_runs(now)))

    async def keep_alive(self) -> None:
        """Renew the lease every third of it; recover the runs of supervisors gone."""
        period = self.lease_ms / 3000
        next_renewal = trio.current_time() + period
        while True:
            with trio.move_on_at(next_renewal):
                await self._sweep_soon.wait()
            if self._sweep_soon.is_set():  # runs are ready: queue them, then wait on
                self._sweep_soon = trio.Event()
                with contextlib.suppress(StorageError):
                    await self.sweep()
                continue
            next_renewal += period
            try:
                await self.renew()
            except StorageError as exc:  # the database is away: the lease is at risk
                log.warning("could not renew this supervisor's lease (%s)", exc)

    def sweep_soon(self) -> None:
        self._sweep_soon.set()

    async def renew(self) -> None:
        await self.calibrate()
        was, workers, now = self.me, self._workers(), self.clock.now_ms()
        assert was is not None
        me = was
        if not await self.backend.write(lambda tx: tx.heartbeat(was, workers, now)):
            log.warning("this supervisor was taken for gone (silent past its lease): rejoining")
            self.changes.emit("rejoined", supervisor=was)
            host, pid = socket.gethostname(), os.getpid()
            me = self.me = await self.backend.write(lambda tx: tx.join(host, pid, now))
        held, before = self._held(), now - self.lease_ms
        orphans = await self.backend.write(lambda tx: tx.release_orphans(me, held, before, now))
        self._requeue(orphans)
        if not self.shared:
            return
        lease = self.lease_ms
        requeued = await self.backend.write(lambda tx: tx.recover(now, lease))
        if requeued:
            self.changes.emit("recovered", runs=len(requeued))
            self.backend.tell("ready")
        await self.sweep()

    async def leave(self) -> None:
        me = self.me
        if me is not None:
            with trio.CancelScope(shield=True), contextlib.suppress(TakoError):
                await self.backend.write(lambda tx: tx.leave(me))  # else: its lease runs out

    async def calibrate(self) -> None:
        """Set the clock to the database's, where supervisors share one."""
        if not (self.shared and isinstance(self.clock, OffsetClock)):
            return
        before = self.clock.now_ms()
        db = await self.backend.database_time()
        after = self.clock.now_ms()
        if db is not None:
            self.clock.offset_ms += db - (before + after) // 2


class FromPeers:
    """What the other supervisors tell this one, applied here (see Backend.listen)."""

    def __init__(self, membership: Membership, changes: Changes, scheduler: Scheduler) -> None:
        self.membership = membership
        self.changes = changes
        self.scheduler = scheduler

    def run_changed(self, run_id: str) -> None:
        self.changes.run_changed(run_id, told=True)

    def due(self, at: int) -> None:
        self.scheduler.note(at, told=True)

    def ready(self) -> None:
        self.membership.sweep_soon()

    def approvals_changed(self) -> None:
        self.changes.approvals_changed(told=True)

    def missed(self) -> None:
        for run_id in list(self.changes.runs):
            self.changes.run_changed(run_id, told=True)
        self.changes.approvals_changed(told=True)
        self.scheduler.note(self.membership.clock.now_ms(), told=True)
        self.membership.sweep_soon()
