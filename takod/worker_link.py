"""takod's side of each worker's connection: checkpoints, parks, finishes, hellos.

This is the hot path. A request is decoded, its write is handed to the
committer with a callback, and the callback sends the reply once the write
is committed: no task and no event per step. Everything a callback does is
synchronous bookkeeping (free the worker's slot, wake the timer, emit an
event) followed by one queued reply line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from tako._errors import InvalidRequest, LineTooLarge, NotAllowed, StaleClaim, TakoError
from tako._protocol import (
    Beat,
    Finish,
    Hello,
    Keyed,
    Leaving,
    Park,
    ReqId,
    RequestError,
    StepDone,
    WorkerRequest,
    decode_worker_request,
    fail,
    ok,
    op_name,
)
from tako.takod.catalog import Catalog
from tako.takod.changes import Changes
from tako.takod.payloads import Payloads
from tako.takod.rules.approvals import first_timer
from tako.takod.rules.runs import Outcome, RunStatus
from tako.takod.scheduler import Clock, Scheduler
from tako.takod.storage.interface import (
    Backend,
    NewRun,
    Parked,
    ParkOutcome,
    QueuedWrite,
    Sink,
    StepSaved,
)
from tako.takod.workers import WorkerPool, WorkerProc

log = logging.getLogger("takod")
# (worker, request, write's result) -> the reply, or None for a plain `ok`
Handler = Callable[[WorkerProc, Any, Any], bytes | None]


def _ack_saved(
    worker: WorkerProc, req_id: ReqId, item: QueuedWrite[Any]
) -> tuple[Sink, bytes] | None:
    """On the writer thread, right after COMMIT: a saved checkpoint's acknowledgement goes
    to the worker at once, instead of after a wake-up of trio (the rest of the
    bookkeeping, an event for `tako dev`, follows in trio)."""
    if item.result == StepSaved.SAVED:
        return worker.channel, ok(req_id)
    return None


class WorkerLink:
    def __init__(
        self,
        backend: Backend,
        *,
        pool: WorkerPool,
        scheduler: Scheduler,
        changes: Changes,
        payloads: Payloads,
        clock: Clock,
        catalog: Catalog,
    ) -> None:
        self.catalog = catalog  # a child run's workflow: its retries and timeout
        self.backend = backend
        self.pool = pool
        self.scheduler = scheduler
        self.changes = changes
        self.payloads = payloads
        self.clock = clock

    async def serve(self, worker: WorkerProc) -> None:
        """Answer one worker's requests until its connection closes."""
        async for line in worker.channel.lines():
            if isinstance(line, LineTooLarge):
                worker.channel.send(fail(None, line))
                continue
            try:
                req = decode_worker_request(line)
            except RequestError as exc:
                worker.channel.send(fail(exc.req_id, exc.error))
                continue
            worker.last_seen = trio.current_time()
            try:
                self._request(worker, req)
            except TakoError as exc:
                worker.channel.send(fail(req.id, exc))

    def _request(self, worker: WorkerProc, req: WorkerRequest) -> None:
        now = self.clock.now_ms()
        match req:
            case StepDone():
                # size only: the worker's encode_value already refused what readers could
                # not decode back, and a full decode here would cost every checkpoint
                self.payloads.check_size(f"result of step {req.key!r}", req.result)
                release = self.pool.paused  # stopping: the run waits for the restart
                self.backend.submit(
                    lambda tx: tx.save_step(req, now, release),
                    self._reply(worker, req, self._stepped),
                    atomic=True,
                    early=functools.partial(_ack_saved, worker, req.id),
                    checkpoint=None if release else (req, now),
                )
            case Park():
                if req.delay is not None:  # takod's clock decides when it falls due
                    req.wake_at = now + req.delay
                if req.approval is not None:
                    self.payloads.check_payload(f"data of approval {req.key!r}", req.approval.data)
                check = self.payloads.check
                child = self._child_of(req)
                self.backend.submit(
                    lambda tx: tx.park(req, now, check, child),
                    self._reply(worker, req, self._parked),
                )
            case Finish():
                self.payloads.check_size("workflow result", req.result)  # encode_value checked
                self.backend.submit(
                    lambda tx: tx.finish(req, now), self._reply(worker, req, self._finished)
                )
            case Keyed():
                keys = self.catalog.limits.keys
                self.backend.submit(
                    lambda tx: tx.keyed(req, now, keys), self._reply(worker, req, self._keyed)
                )
            case Beat():
                worker.channel.send(ok(req.id))
            case Hello():
                worker.ready = True
                self.pool.kick()
                worker.channel.send(ok(req.id))
            case Leaving():
                if worker.in_flight or worker.reserved:
                    raise NotAllowed("runs are assigned to this worker")
                worker.leaving = True
                worker.channel.send(ok(req.id))
            case _:
                raise InvalidRequest(f"op {op_name(req)!r} is not a worker op")

    def _child_of(self, req: Park) -> NewRun | None:
        """The run a `step.invoke` or `step.start_child` starts, as `start` would make it."""
        spec = req.child
        if spec is None:
            return None
        wf = self.catalog.get(spec.workflow)  # UnknownWorkflow, to the parent's step
        self.payloads.check_payload(f"payload of child run {spec.workflow!r}", spec.payload)
        timeout_ms = self.catalog.timeout_ms(spec.workflow)
        return NewRun(
            spec.workflow, bytes(spec.payload), wf.retries + 1, spec.run_id, None, timeout_ms,
            spec.traceparent, parent_run_id=req.run_id,
        )  # fmt: skip

    def _reply(
        self, worker: WorkerProc, req: StepDone | Park | Finish | Keyed, then: Handler
    ) -> Callable[[QueuedWrite[Any]], None]:
        """The committer callback: refusals answered here, successes passed to `then`."""

        def done(item: QueuedWrite[Any]) -> None:
            if item.error is None:
                reply = then(worker, req, item.result)
                if not item.answered:  # the writer thread may have sent it already
                    worker.channel.send(ok(req.id) if reply is None else reply)
                return
            error = item.error
            if not isinstance(error, TakoError):
                log.error("worker request %r failed", req, exc_info=error)
                error = TakoError(f"internal error: {type(error).__name__}: {error}")
            if isinstance(error, StaleClaim | NotAllowed):
                self.pool.finished(worker, req.run_id)
            worker.channel.send(fail(req.id, error))

        return done

    def _stepped(self, worker: WorkerProc, req: StepDone, outcome: StepSaved) -> bytes | None:
        if outcome == StepSaved.SAVED:
            self.changes.metrics.step(req.finished_at - req.started_at)
            if self.changes.runs:  # someone watches a run (`watch`): free when nobody does
                self.changes.run_changed(req.run_id)
            self.changes.emit(
                "step",
                run_id=req.run_id,
                key=req.key,
                status=req.status,
                ms=req.finished_at - req.started_at,
                error=req.error,
            )
            return None
        self.pool.finished(worker, req.run_id)
        if outcome == StepSaved.RELEASED:
            self.changes.emit("released", run_id=req.run_id, key=req.key)
        else:
            self.changes.run_finished(req.run_id, "cancelled")
            self.scheduler.note(self.clock.now_ms())  # a parent waiting for it is due now
        return ok(req.id, cancel=True)

    def _parked(self, worker: WorkerProc, req: Park, parked: Parked) -> bytes:
        if parked.outcome == ParkOutcome.CANCELLED:
            self.pool.finished(worker, req.run_id)
            self.changes.run_finished(req.run_id, "cancelled")
            self.scheduler.note(self.clock.now_ms())  # a parent waiting for it is due now
            return ok(req.id, cancel=True)
        if parked.started is not None:  # a child run: ready to run now
            self.changes.metrics.run_started()
            self.pool.enqueue([parked.started])
        if parked.outcome == ParkOutcome.GO_ON:
            return ok(req.id, result=msgspec.Raw(parked.result or b"null"))
        self.pool.finished(worker, req.run_id)
        self.scheduler.note(req.wake_at)
        if req.approval is not None:
            self.scheduler.note(first_timer(req.approval, self.clock.now_ms()))
            self.changes.approvals_changed()
        self.changes.run_changed(req.run_id)
        self.changes.emit(
            "parked",
            run_id=req.run_id,
            kind=req.kind,
            key=req.key,
            event=req.event,
            wake_at=req.wake_at,
            error=req.error,
        )
        return ok(req.id, parked=True)

    def _keyed(self, worker: WorkerProc, req: Keyed, may_go_on: bool) -> bytes | None:
        if may_go_on:
            return None
        self.pool.finished(worker, req.run_id)  # its key is full: back in line
        self.changes.emit("held", run_id=req.run_id, key=req.key)
        return ok(req.id, parked=True)

    def _finished(self, worker: WorkerProc, req: Finish, outcome: Outcome) -> bytes | None:
        self.pool.finished(worker, req.run_id)
        if outcome.parent is not None:  # it was a child its parent waited for
            self.pool.enqueue([outcome.parent])
        if outcome.status == RunStatus.PENDING:
            self.changes.emit(
                "retrying", run_id=req.run_id, wake_at=outcome.wake_at, error=req.error
            )
            self.scheduler.note(outcome.wake_at)
        else:
            self.changes.run_finished(req.run_id, outcome.status, error=req.error)
        return None
