"""The domain operations: start, signal, decide, cancel, retry, wait, and what the timer,
the pool and housekeeping ask for.

Each operation checks its input, asks storage to apply it (one write, through
the backend's group commit), and then tells whoever cares: the pool gets the
runs it made ready, the scheduler the times it made due, `changes` the runs
and approvals it touched. The operations know nothing of sockets or framing
(clients.py) nor of SQL (takod/storage).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import trio

from tako._errors import InvalidRequest, StorageError
from tako._protocol import Assign
from tako._records import ApprovalView, RunView, iso
from tako._replies import SupervisorRow
from tako.takod.catalog import Catalog
from tako.takod.changes import Changes
from tako.takod.config import AppConfig
from tako.takod.membership import Membership
from tako.takod.metrics import Pool
from tako.takod.payloads import Payloads
from tako.takod.rules.runs import FINISHED, RunStatus
from tako.takod.scheduler import Clock, Scheduler
from tako.takod.storage.interface import (
    Ask,
    Backend,
    Created,
    NewRun,
    QueuedWrite,
    Reads,
    Tx,
)
from tako.takod.workers import Slots, WorkerPool

T = TypeVar("T")
log = logging.getLogger("takod")
MAX_WAIT = 300.0  # one `wait` request holds at most this long; clients ask again
StartReply = Callable[[Created | BaseException], None]


class Woken(NamedTuple):
    """What a waking write claimed, and what it left for the queue."""

    slots: Slots | None
    assigns: list[Assign]
    rest: list[str]
    since: float | None = None  # a resume's start (time.monotonic()); None for a start


class Status(NamedTuple):
    workers: int
    runs: dict[str, int]
    next_wake_at: str | None
    supervisors: list[SupervisorRow] | None  # where several share the store


class Service:
    def __init__(
        self,
        backend: Backend,
        *,
        pool: WorkerPool,
        scheduler: Scheduler,
        changes: Changes,
        catalog: Catalog,
        payloads: Payloads,
        config: AppConfig,
        clock: Clock,
        membership: Membership,
    ) -> None:
        self.backend = backend
        self.membership = membership  # whose claims these are
        self.pool = pool
        self.scheduler = scheduler
        self.changes = changes
        self.catalog = catalog
        self.payloads = payloads
        self.config = config
        self.clock = clock
        self._limited: dict[str, str] = {}  # running runs of limited workflows

    # -- client operations --------------------------------------------------------------

    def start(
        self,
        workflow: str,
        payload: bytes,
        reply: StartReply,
        *,
        run_id: str | None = None,
        delay: float | None = None,
        traceparent: str | None = None,
    ) -> None:
        """Create a run; `reply` gets the result once it is committed.

        Answered from the commit callback with no task of its own, as worker
        requests are: starts arrive pipelined by the thousand, and a task, a
        cancel scope and an event per start were most of their cost."""
        wf = self.catalog.get(workflow)
        self.payloads.check_payload("payload", payload)
        now = self.clock.now_ms()
        timeout_ms = int(wf.timeout * 1000) if wf.timeout else None
        delay_ms = int(delay * 1000) if delay else None
        new = NewRun(workflow, payload, wf.retries + 1, run_id, delay_ms, timeout_ms, traceparent)

        def created(result: Created | BaseException, woken: Woken) -> None:
            try:
                try:
                    if isinstance(result, Created) and not result.deduplicated:
                        self.changes.metrics.run_started()
                        self.changes.emit("started", run_id=result.run_id, workflow=workflow)
                        for due in (timeout_ms, delay_ms):
                            self.scheduler.note(now + due if due else None)
                finally:  # a claimed run must reach its worker whatever happens here
                    self.hand_over(woken)
            except Exception as exc:
                reply(exc)
                return
            reply(result)

        def ready(c: Created) -> list[str]:
            return [] if delay_ms or c.deduplicated else [c.run_id]  # the timer wakes a delay

        def write(tx: Tx) -> Created:
            return tx.create_run(new, now)

        self.submit_waking(0 if delay_ms else 1, ready, write, created, atomic=True)

    async def signal(
        self, event: str, payload: bytes, *, run_id: str | None, ttl: float | None
    ) -> tuple[int, bool]:
        """Deliver a signal; returns (runs resumed, kept for a later waiter)."""
        self.payloads.check_payload("signal payload", payload)
        ttl_ms = int((ttl if ttl is not None else self.config.runs.signal_ttl) * 1000)
        now, check = self.clock.now_ms(), self.payloads.check
        delivered, claimed = await self.write_waking(
            1 if run_id is not None else self.config.workers.concurrency,
            lambda d: d.woken,
            lambda tx: tx.signal(
                event, payload, run_id=run_id, ttl_ms=ttl_ms, now=now, check=check
            ),
        )
        try:
            for rid in delivered.woken:
                self.changes.run_changed(rid)
                self.changes.emit("woke", run_id=rid, by=event)
        finally:
            self.hand_over(claimed)
        return len(delivered.woken), delivered.kept

    async def decide(self, ask: Ask) -> ApprovalView:
        """One decision on an approval request, applied in one transaction."""
        if ask.value is not None:
            self.payloads.check_payload("edited value", ask.value)
        now, check = self.clock.now_ms(), self.payloads.check
        run_id, woken = await self.write_waking(
            1,
            lambda rid: [] if rid is None else [rid],
            lambda tx: tx.decide(ask, now, check),
        )
        try:
            approval = await self.read(lambda r: r.approval(ask.key))
            if run_id is not None:
                self.changes.run_changed(run_id)
                self.changes.emit("woke", run_id=run_id, by=f"approval {ask.key} {approval.status}")
        finally:  # the woken run is claimed: it must reach its worker whatever happens here
            self.changes.approvals_changed()
            self.hand_over(woken)
        return approval

    async def cancel(self, run_id: str, reason: str | None) -> RunView:
        now = self.clock.now_ms()
        status = await self.backend.write(lambda tx: tx.cancel(run_id, reason, now))
        self.scheduler.note(now)  # its children are cancelled too: a parent may be due now
        self.changes.approvals_changed()
        self.changes.run_changed(run_id)
        if status in FINISHED:  # a running run says so when its step ends
            self.changes.run_finished(run_id, status, error=reason or "cancelled")
        return await self.read(lambda r: r.run(run_id))

    async def retry(self, run_id: str) -> RunView:
        now = self.clock.now_ms()
        run = await self.read(lambda r: r.run(run_id, steps=False))
        timeout_ms = self.catalog.timeout_ms(run.workflow)
        await self.backend.write(lambda tx: tx.retry(run_id, now, timeout_ms))
        self.scheduler.note(now + timeout_ms if timeout_ms else None)
        self.pool.enqueue([run_id])
        self.changes.run_changed(run_id)
        return await self.read(lambda r: r.run(run_id))

    async def list_runs(
        self, *, status: str | None, workflow: str | None, limit: int
    ) -> list[RunView]:
        if status is not None and status not in RunStatus.__members__.values():
            raise InvalidRequest(f"unknown status {status!r}; one of {', '.join(RunStatus)}")
        return await self.read(lambda r: r.runs(status=status, workflow=workflow, limit=limit))

    async def wait(
        self, run_id: str, timeout: float | None, until: frozenset[str] = FINISHED
    ) -> tuple[bool, RunView]:
        """(finished, the run) once the run's status is one of `until`, or after `timeout`
        with finished False."""
        limit = min(timeout if timeout is not None else MAX_WAIT, MAX_WAIT)
        finished = await self.finished_run(run_id, limit, until) is not None
        return finished, await self.read(lambda r: r.run(run_id))

    async def finished_run(
        self, run_id: str, limit: float, until: frozenset[str] = FINISHED
    ) -> RunView | None:
        """The run once it is finished (its status one of `until`), or None after `limit`
        seconds. The run is always read once, even with a limit of 0: a finished run is
        finished, however little the caller is willing to wait."""
        deadline = trio.current_time() + limit
        while True:
            event = trio.Event()
            self.changes.watch(run_id, event)
            try:
                run = await self.read(lambda r: r.run(run_id, steps=False))
                if run.status in until:
                    return run
                with trio.move_on_at(deadline):
                    await event.wait()
                if not event.is_set():
                    return None
            finally:
                self.changes.unwatch(run_id, event)

    async def run_internal(self, workflow: str, payload: bytes, run_id: str) -> RunView:
        """Start (or retry) a run of a built-in workflow and wait for it to finish."""
        wf = self.catalog.get(workflow)
        now = self.clock.now_ms()
        new = NewRun(workflow, payload, wf.retries + 1, run_id)
        created = await self.backend.write(lambda tx: tx.create_run(new, now))
        if created.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            await self.backend.write(lambda tx: tx.retry(run_id, now))
        self.pool.enqueue([run_id])
        while True:
            run = await self.finished_run(run_id, MAX_WAIT)
            if run is not None:
                return run

    async def status(self) -> Status:
        counts = await self.read(lambda r: r.counts())
        next_wake = await self.read(lambda r: r.next_wake())
        supervisors = None
        if self.membership.shared:
            now, lease = self.clock.now_ms(), self.membership.lease_ms
            supervisors = await self.read(lambda r: r.supervisors(now, lease))
        return Status(self.pool.live, counts, iso(next_wake), supervisors)

    async def sync_schedules(self) -> None:
        """Store the app's cron schedules as its workflows now define them; the timer
        then starts each tick's run (see storage/sqlite/schedules.py)."""
        specs = self.catalog.schedules()
        now, complete = self.clock.now_ms(), not self.catalog.registry.errors
        await self.backend.write(lambda tx: tx.sync_schedules(specs, now, complete=complete))
        self.scheduler.note(now)  # a tick missed while down is due now

    async def metrics(self) -> bytes:
        """The Prometheus text of `GET /metrics`."""
        store = await self.read(lambda r: r.store_counts())
        pool = Pool(workers=self.pool.live, ready=self.pool.queued, in_flight=self.pool.in_flight)
        return self.changes.metrics.exposition(store, pool)

    async def prune(self, older_than: float | None) -> int:
        keep = older_than if older_than is not None else self.config.runs.retention
        before = self.clock.now_ms() - int(keep * 1000)
        return await self.backend.write(lambda tx: tx.prune(before))

    # -- what the pool, the timer and housekeeping ask for --------------------------------

    async def claim(self, run_ids: list[str]) -> list[Assign]:
        now, hold, me = self.clock.now_ms(), self.catalog.held_because, self.membership.me
        limits = self.catalog.limits
        assigns = await self.backend.write(lambda tx: tx.claim(run_ids, now, hold, me, limits))
        self.changes.metrics.claimed(assigns)
        self._emit_running(assigns)
        return assigns

    async def lost(self, run_ids: list[str], alone: bool, reason: str) -> list[str]:
        """A worker went away holding these runs (`alone`: it held only them)."""
        now = self.clock.now_ms()
        out = await self.backend.write(
            lambda tx: tx.requeue_lost(run_ids, alone=alone, reason=reason, now=now)
        )
        for rid in out.failed:
            self.changes.run_finished(rid, "failed", error=reason)
        if out.failed:
            self.scheduler.note(now)  # a parent waiting for one of them is due now
        self.changes.emit("worker_lost", reason=reason, runs=len(run_ids))
        return out.requeued

    async def next_wake(self) -> int | None:
        return await self.read(lambda r: r.next_wake())

    async def wake_due(self, now: int) -> None:
        due, woken = await self.write_waking(
            self.config.workers.concurrency, lambda d: d.ready, lambda tx: tx.wake_due(now)
        )
        try:
            self.changes.approvals_changed()
            for rid, error in due.failed:
                for worker in self.pool.workers.values():
                    if rid in worker.in_flight:
                        self.pool.finished(worker, rid)
                self.changes.run_finished(rid, "failed", error=error)
        finally:
            self.hand_over(woken)

    async def housekeeping(self) -> None:
        """Prune finished runs past `[runs] retention` and expired signals, now and hourly."""
        while True:
            now = self.clock.now_ms()
            before = now - int(self.config.runs.retention * 1000)
            try:
                pruned = await self.backend.write(lambda tx: tx.prune(before))  # noqa: B023
                await self.backend.write(lambda tx: tx.expire_signals(now))  # noqa: B023
            except StorageError as exc:  # a full disk: nothing to lose here, try later
                log.warning("housekeeping could not write (%s); retrying in a minute", exc)
                await trio.sleep(60)
                continue
            if pruned:
                self.changes.emit("pruned", runs=pruned)
            await trio.sleep(3600)

    # -- plumbing -------------------------------------------------------------------------

    async def read(self, fn: Callable[[Reads], T]) -> T:
        return await self.backend.read(fn)

    def submit_waking(
        self,
        want: int,
        ready_of: Callable[[T], list[str]],
        write: Callable[[Tx], T],
        then: Callable[[T | BaseException, Woken], None],
        *,
        atomic: bool = False,
    ) -> None:
        """Queue a write that makes runs ready (`ready_of(result)` names them), with as
        many of them as a warm worker has room for (up to `want`) claimed in the same
        transaction; `then(result or error, woken)` runs once it is committed.
        `atomic`: `write` is one statement, so when nothing is claimed beside it the
        committer may skip its savepoint (a delayed start, a burst past the room).

        This is the resume path: a signal, a decision, a timer or a start commits
        once, and the assignment goes out with that commit, instead of a second
        transaction (and fsync) for the claim. `then` passes `woken` to `hand_over`
        once its own events are out."""
        slots, write_and_claim = self._claiming(want, ready_of, write)

        def done(item: QueuedWrite[tuple[T, list[Assign], list[str]]]) -> None:
            if item.error is not None:
                if slots is not None:
                    self.pool.unreserve(slots)
                then(item.error, Woken(None, [], []))
                return
            result, assigns, rest = item.value()
            then(result, Woken(slots, assigns, rest))

        self.backend.submit(write_and_claim, done, atomic=atomic and slots is None)

    async def write_waking(
        self, want: int, ready_of: Callable[[T], list[str]], write: Callable[[Tx], T]
    ) -> tuple[T, Woken]:
        """`submit_waking`, awaited: returns once committed (a resume: a signal, a
        decision, a timer)."""
        since = time.monotonic()
        slots, write_and_claim = self._claiming(want, ready_of, write)
        try:
            result, assigns, rest = await self.backend.write(write_and_claim)
        except BaseException:
            if slots is not None:
                self.pool.unreserve(slots)
            raise
        return result, Woken(slots, assigns, rest, since)

    def _claiming(
        self, want: int, ready_of: Callable[[T], list[str]], write: Callable[[Tx], T]
    ) -> tuple[Slots | None, Callable[[Tx], tuple[T, list[Assign], list[str]]]]:
        """Hold places for up to `want` runs, and wrap `write` so that it claims the runs
        it makes ready into them; returns (the places or None, the wrapped write)."""
        slots = self.pool.reserve(want)
        isolated = self.pool.isolated if slots is not None else frozenset()
        room = slots.count if slots is not None else 0
        now, hold, me = self.clock.now_ms(), self.catalog.held_because, self.membership.me
        limits = self.catalog.limits

        def write_and_claim(tx: Tx) -> tuple[T, list[Assign], list[str]]:
            result = write(tx)
            ready = ready_of(result)
            take = [rid for rid in ready if rid not in isolated][:room]
            assigns = tx.claim(take, now, hold, me, limits) if take else []
            return result, assigns, [rid for rid in ready if rid not in take]

        return slots, write_and_claim

    def hand_over(self, woken: Woken) -> None:
        """Send the runs claimed by a waking write to their worker; queue the rest."""
        if woken.since is not None:
            self.changes.metrics.woken(woken.since, len(woken.assigns), woken.rest)
        self._emit_running(woken.assigns)
        if woken.slots is not None:
            self.pool.hand_over(woken.slots, woken.assigns)
        self.pool.enqueue(woken.rest)

    def freed(self, run_id: str) -> None:
        """A run left its worker: if its workflow has a concurrency limit, the oldest of
        its ready runs may take the place (the claim checks the limit again)."""
        workflow = self._limited.pop(run_id, None)
        if workflow is None:
            return
        limits = self.catalog.limits
        now, room = self.clock.now_ms(), limits.workflows.get(workflow) or limits.keys[workflow]
        self.backend.submit(
            lambda tx: tx.ready_of(workflow, now, room),
            lambda item: self.pool.enqueue(item.value()) if item.error is None else None,
        )

    def _emit_running(self, assigns: list[Assign]) -> None:
        limits = self.catalog.limits
        limited = bool(limits)
        for a in assigns:
            if limited and (a.workflow in limits.workflows or a.workflow in limits.keys):
                self._limited[a.run_id] = a.workflow
            if self.changes.runs:
                self.changes.run_changed(a.run_id)
            self.changes.emit("running", run_id=a.run_id, workflow=a.workflow, attempt=a.attempt)
