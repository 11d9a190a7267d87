"""takod's heart: answers every request, and connects store, timer and workers.

Each operation of the socket protocol (docs/protocol.md) is one method here. Writes go through the
committer (group commit), reads through a read-only connection on a thread.
Whenever a run becomes ready it is pushed to the worker pool; whenever
something falls due later, the scheduler is told.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec
import trio

from tako._errors import (
    InvalidRequest,
    LineTooLarge,
    PayloadTooLarge,
    StorageError,
    TakoError,
    UnknownWorkflow,
)
from tako._protocol import (
    HTTP_OPS,
    Approve,
    Assign,
    Cancel,
    CancelApproval,
    GetApproval,
    GetRun,
    ListApprovals,
    ListRuns,
    Prune,
    Reject,
    Request,
    RequestError,
    Retry,
    Signal,
    Start,
    Status,
    Wait,
    Workflows,
    check_json,
    decode_request,
    fail,
    ok,
    op_name,
)
from tako._records import LoadError, Registry
from takod import store as db
from takod.access import Access
from takod.approvals import read_approval, read_approvals
from takod.committer import Committer, Pending
from takod.config import AppConfig
from takod.connection import Connection
from takod.notifiers import TARGET as NOTIFIERS_TARGET
from takod.notifiers import Notifiers
from takod.scheduler import Clock, Scheduler, SystemClock
from takod.schema_check import check as check_schema
from takod.server import DataDirLock, open_listener
from takod.transitions import FINISHED, PARKED, RunStatus
from takod.webhook import Webhook
from takod.worker_link import WorkerLink
from takod.workers import Slots, WorkerPool
from worker_runtime.registry import NOTIFY_WORKFLOW

T = TypeVar("T")
log = logging.getLogger("takod")
DEFAULT_MAX_LINE = 4 * 1024 * 1024
MAX_IN_PROGRESS = 512  # requests of one client connection being worked on at once
MAX_WAIT = 300.0  # one `wait` request holds at most this long; clients ask again
EventHook = Callable[[str, dict[str, Any]], None]


def peer_uid(stream: trio.SocketStream) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Woken(NamedTuple):
    """What `Supervisor.write_waking` claimed, and what it left for the queue."""

    slots: Slots | None
    assigns: list[Assign]
    rest: list[str]


def _as_error(req: Request, exc: Exception) -> TakoError:
    """What a client is told when its request failed: a bug is logged, not explained."""
    if isinstance(exc, TakoError):
        return exc
    log.error("request %r failed", req, exc_info=exc)
    return TakoError(f"internal error: {type(exc).__name__}: {exc}")


async def _all_answered(in_progress: trio.Semaphore) -> None:
    """Wait until every request read from a connection has been answered.

    A client may send its requests and then shut its writing side (`printf ... | socat`):
    starts are answered from the commit callback, not from a task, so the end of input
    alone does not mean their replies are out yet."""
    for _ in range(MAX_IN_PROGRESS):
        await in_progress.acquire()


def _first(result: tuple[list[str], Any]) -> list[str]:
    return result[0]


def _one(run_id: str | None) -> list[str]:
    return [] if run_id is None else [run_id]


def _delayed(_result: tuple[str, str, bool]) -> list[str]:
    return []  # the scheduler wakes it


def _started(result: tuple[str, str, bool]) -> list[str]:
    run_id, _status, dedup = result
    return [] if dedup else [run_id]


class Supervisor:
    def __init__(
        self,
        app_dir: Path,
        *,
        data_dir: Path,
        socket_path: Path,
        config: AppConfig,
        clock: Clock | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        on_event: EventHook | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.config = config
        self.clock = clock or SystemClock()
        self.max_line = max_line
        self.on_event = on_event
        self.db_path = data_dir / "apps" / config.name / "runs.db"
        self.registry = Registry()
        self._lock = DataDirLock(data_dir)
        self._watchers: dict[str, set[trio.Event]] = {}
        self._read_limiter = trio.CapacityLimiter(1)
        self.store: db.Store
        self.committer: Committer
        self.scheduler = Scheduler(self.clock, self._next_wake, self._wake_due)
        self.link = WorkerLink(self)
        self.notifiers = Notifiers(self)
        self.access = Access(self)  # tokens, approval links, `watch`: the HTTP surface's ops
        settings = config.approvals
        self.webhook = (
            Webhook(
                settings.webhook,
                os.environ.get(settings.webhook_secret_env) or settings.webhook_secret,
                read=self._read,
                write=lambda fn, *args: self._write(fn, self.store.conn, *args),
                delivered=self.access.approvals_changed,
            )
            if settings.webhook
            else None
        )
        self.pool = WorkerPool(
            app_dir=app_dir,
            config=config,
            socket_path=socket_path,
            claim=self._claim,
            crashed=self._crashed,
            serve_worker=self.link.serve,
        )

    # -- life cycle -------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._lock.acquire()
        try:
            if self.socket_path.parent == self.data_dir:
                os.chmod(self.data_dir, 0o700)
            self.store = db.Store(
                self.db_path,
                durability=self.config.storage.durability,
            )
            self.committer = Committer(self.store.conn)
            self.store.approvals.links = self.access.links
            try:
                await self._serve(task_status)
            finally:
                self.store.close()
        finally:
            with trio.CancelScope(shield=True):
                if self.socket_path.exists():
                    self.socket_path.unlink()
            self._lock.release()

    async def _serve(self, task_status: trio.TaskStatus[Supervisor]) -> None:
        now = self.clock.now_ms()
        self.store.recover(now)
        await self.load_registry()
        listener = await open_listener(self.socket_path)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.committer.run)
                await nursery.start(self.pool.run)
                nursery.start_soon(self.scheduler.run)
                nursery.start_soon(self._housekeeping)
                if self.webhook is not None:
                    nursery.start_soon(self.webhook.run)
                nursery.start_soon(self.notifiers.run)
                self.pool.enqueue(self.store.ready_runs(now))
                nursery.start_soon(self._accept, listener)
                task_status.started(self)
        finally:
            await self.pool.stop()

    async def _accept(self, listener: trio.SocketListener) -> None:
        async with listener:
            await trio.serve_listeners(self._serve_client, [listener])

    async def drain(self, grace: float | None = None) -> int:
        """Stop gracefully: assign nothing more, let steps in flight finish for up to
        `grace` seconds (`[workers] shutdown_grace`), each run released at its next
        step boundary. Returns how many runs were still in flight when time ran out;
        they resume at the next start (their step in flight runs again)."""
        self.pool.pause()
        with trio.move_on_after(self.config.workers.shutdown_grace if grace is None else grace):
            while self.pool.in_flight:
                await trio.sleep(0.02)
        return self.pool.in_flight

    async def reload(self) -> Registry:
        """Re-read the app's workflows. New and resumed runs use the new code; a worker
        in flight finishes its current steps first."""
        registry = await self.load_registry()
        self.pool.retire_all()
        self.pool.enqueue(await self._write(self.store.ready_runs, self.clock.now_ms()))
        self.emit("reloaded", workflows=len(registry.workflows), errors=len(registry.errors))
        return registry

    async def load_registry(self) -> Registry:
        """Learn the app's workflows from a `--describe` worker: user code never loads here."""
        # -P: the current folder must not shadow installed packages (a `tako/` clone here)
        argv = [sys.executable, "-P", "-m", "worker_runtime", str(self.app_dir), "--describe"]
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        registry = None
        if proc.returncode == 0:
            with contextlib.suppress(msgspec.DecodeError):  # it exited early (os._exit?)
                registry = msgspec.json.decode(proc.stdout, type=Registry)
        if registry is not None:
            self.registry = registry
            for file, text in registry.output.items():
                self.emit("output", file=file, text=text)
        else:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            reason = message[-1] if message else f"exit code {proc.returncode}"
            if proc.returncode == 0:
                reason += " (a workflow file exited while imported?)"
            self.registry = Registry(
                errors=[
                    LoadError(
                        file=str(self.app_dir / "workflows"),
                        line=None,
                        message=f"the worker failed to load the app: {reason}",
                    )
                ]
            )
        self._workflows = {w.name: w for w in self.registry.workflows}
        targets: tuple[str, ...] = ("webhook",) if self.config.approvals.webhook else ()
        if NOTIFY_WORKFLOW in self._workflows:  # the app has @tako.notifier functions
            targets += (NOTIFIERS_TARGET,)
        if hasattr(self, "store"):
            self.store.approvals.targets = targets
        return self.registry

    # -- connections ------------------------------------------------------------------

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        if peer_uid(stream) != os.getuid():  # the socket is 0600; this is the second lock
            await stream.aclose()
            return
        conn = Connection(stream, max_line=self.max_line)
        # Pipelining is welcome, flooding is not: past this many requests in progress
        # we stop reading the connection until some are answered (backpressure).
        in_progress = trio.Semaphore(MAX_IN_PROGRESS)
        async with trio.open_nursery() as outer:
            outer.start_soon(conn.write_loop)
            async with trio.open_nursery() as requests:
                async for line in conn.lines():
                    if conn.closed:  # cut off (it stopped reading): drop what it asked
                        requests.cancel_scope.cancel()
                        break
                    if isinstance(line, LineTooLarge):
                        conn.send(fail(None, line))
                        continue
                    try:
                        req = decode_request(line)
                    except RequestError as exc:
                        conn.send(fail(exc.req_id, exc.error))
                        continue
                    try:  # no yield per request while under the limit: pipelines stay cheap
                        in_progress.acquire_nowait()
                    except trio.WouldBlock:
                        await in_progress.acquire()
                    if isinstance(req, Start):  # no task of its own: see start()
                        self._start_from(conn, req, in_progress)
                    else:
                        requests.start_soon(self._answer, conn, req, in_progress)
                if conn.closed:
                    requests.cancel_scope.cancel()
            if not conn.closed:
                await _all_answered(in_progress)
            conn.finish()

    async def _answer(self, conn: Connection, req: Request, in_progress: trio.Semaphore) -> None:
        try:
            await self._answer_one(conn, req)
        finally:
            in_progress.release()

    async def _answer_one(self, conn: Connection, req: Request) -> None:
        try:
            conn.send(await self._client_op(req))
        except Exception as exc:
            conn.send(fail(req.id, _as_error(req, exc)))

    def _start_from(self, conn: Connection, req: Start, in_progress: trio.Semaphore) -> None:
        def reply(line: bytes) -> None:
            in_progress.release()
            conn.send(line)

        try:
            self.start(req, reply)
        except Exception as exc:
            reply(fail(req.id, _as_error(req, exc)))

    # -- client operations ------------------------------------------------------------

    async def _client_op(self, req: Request) -> bytes:
        if isinstance(req, HTTP_OPS):
            return await self.access.op(req)
        match req:
            case Signal():
                return await self.signal(req)
            case GetRun(run_id=run_id):
                return ok(req.id, run=await self._read(db.read_run, run_id))
            case ListRuns(status=status, workflow=workflow, limit=limit):
                if status is not None and status not in RunStatus.__members__.values():
                    raise InvalidRequest(
                        f"unknown status {status!r}; one of {', '.join(RunStatus)}"
                    )
                runs = await self._read(db.read_runs, status=status, workflow=workflow, limit=limit)
                return ok(req.id, runs=runs)
            case Cancel(run_id=run_id, reason=reason):
                status = await self._write(self.store.cancel, run_id, reason, self.clock.now_ms())
                self.approvals_changed()
                self.run_changed(run_id)
                if status in FINISHED:  # a running run says so when its step ends
                    self.run_finished(run_id, status, error=reason or "cancelled")
                return ok(req.id, run=await self._read(db.read_run, run_id))
            case Retry(run_id=run_id):
                now = self.clock.now_ms()
                run = await self._read(db.read_run, run_id, steps=False)
                wf = self._workflows.get(run["workflow"])
                timeout_ms = int(wf.timeout * 1000) if wf is not None and wf.timeout else None
                await self._write(self.store.retry, run_id, now, timeout_ms)
                self.scheduler.note(now + timeout_ms if timeout_ms else None)
                self.pool.enqueue([run_id])
                self.run_changed(run_id)
                return ok(req.id, run=await self._read(db.read_run, run_id))
            case Wait(run_id=run_id, timeout=timeout, until=until):
                settled = FINISHED | PARKED if until == "parked" else FINISHED
                return await self.wait(req.id, run_id, timeout, settled)
            case Status():
                return await self.status(req)
            case Workflows():
                workflows = self.registry.of_the_app()
                return ok(req.id, workflows=workflows, errors=self.registry.errors)
            case Approve() | Reject() | CancelApproval():
                return await self.decide(req)
            case ListApprovals():
                approvals = await self._read(
                    read_approvals, approver=req.approver, workflow=req.workflow,
                    status=req.status, limit=req.limit,
                )  # fmt: skip
                return ok(req.id, approvals=approvals)
            case GetApproval(key=key):
                return ok(req.id, approval=await self._read(read_approval, key))
            case Prune(older_than=older_than):
                keep = older_than if older_than is not None else self.config.runs.retention
                before = self.clock.now_ms() - int(keep * 1000)
                return ok(req.id, pruned=await self._write(self.store.prune, before))
            case _:
                raise InvalidRequest(f"op {op_name(req)!r} is for worker processes only")

    def start(self, req: Start, reply: Callable[[bytes], None]) -> None:
        """Create a run; `reply` gets the answer once it is committed.

        Answered from the commit callback with no task of its own, as worker
        requests are: starts arrive pipelined by the thousand, and a task, a
        cancel scope and an event per start were most of their cost."""
        wf = self._workflows.get(req.workflow)
        if wf is None:
            known = ", ".join(sorted(self._workflows)) or "none"
            broken = "".join(
                f"; {e.file} failed to load: line {e.line or '?'}: {e.message}"
                for e in self.registry.errors
            )
            raise UnknownWorkflow(f"no workflow named {req.workflow!r} (known: {known}){broken}")
        payload = bytes(req.payload)
        self.check_payload("payload", payload)
        now = self.clock.now_ms()
        timeout_ms = int(wf.timeout * 1000) if wf.timeout else None
        delay_ms = int(req.delay * 1000) if req.delay else None
        create = functools.partial(
            self.store.create_run, workflow=req.workflow, payload=payload,
            max_attempts=wf.retries + 1, now=now, run_id=req.run_id, delay_ms=delay_ms,
            timeout_ms=timeout_ms,
        )  # fmt: skip

        def created(result: tuple[str, str, bool] | BaseException, woken: Woken) -> None:
            try:
                if isinstance(result, BaseException):
                    raise result
                run_id, status, dedup = result
                try:
                    if not dedup:
                        self.emit("started", run_id=run_id, workflow=req.workflow)
                        for due in (timeout_ms, delay_ms):
                            self.scheduler.note(now + due if due else None)
                finally:  # a claimed run must reach its worker whatever happens here
                    self.hand_over(woken)
                reply(ok(req.id, run_id=run_id, status=status, deduplicated=dedup))
            except Exception as exc:
                reply(fail(req.id, _as_error(req, exc)))

        self.submit_waking(
            0 if delay_ms else 1, _delayed if delay_ms else _started, create, created
        )

    async def signal(self, req: Signal) -> bytes:
        payload = bytes(req.payload)
        self.check_payload("signal payload", payload)
        ttl = req.ttl if req.ttl is not None else self.config.runs.signal_ttl
        (woken, kept), claimed = await self.write_waking(
            1 if req.run_id is not None else self.config.workers.concurrency,
            _first,
            self.store.signal,
            req.event,
            payload,
            run_id=req.run_id,
            ttl_ms=int(ttl * 1000),
            now=self.clock.now_ms(),
            check=self.check,
        )
        try:
            for rid in woken:
                self.run_changed(rid)
                self.emit("woke", run_id=rid, by=req.event)
        finally:
            self.hand_over(claimed)
        return ok(req.id, delivered=len(woken), kept=kept)

    async def decide(self, req: Approve | Reject | CancelApproval) -> bytes:
        """One decision on an approval request, applied in one transaction."""
        value: bytes | None = None
        reason: str | None = None
        match req:
            case Approve():
                action = "approve"
                if len(req.value):
                    value = bytes(req.value)
                    self.check_payload("edited value", value)
            case Reject():
                action, reason = "reject", req.reason
            case CancelApproval():
                action, reason = "cancel", req.reason
        run_id, woken = await self.write_waking(
            1, _one, self.store.approvals.decide, action, req.key, by=req.by,
            now=self.clock.now_ms(), check=self.check, value=value, reason=reason,
            decision_id=req.decision_id, seen=req.seen,
        )  # fmt: skip
        try:
            approval = await self._read(read_approval, req.key)
            if run_id is not None:
                self.run_changed(run_id)
                self.emit("woke", run_id=run_id, by=f"approval {req.key} {approval['status']}")
        finally:  # the woken run is claimed: it must reach its worker whatever happens here
            self.approvals_changed()
            self.hand_over(woken)
        return ok(req.id, approval=approval)

    async def wait(
        self, req_id: Any, run_id: str, timeout: float | None, until: frozenset[str] = FINISHED
    ) -> bytes:
        """Reply when the run's status is one of `until`, or after `timeout` with
        `finished: false`."""
        limit = min(timeout if timeout is not None else MAX_WAIT, MAX_WAIT)
        finished = await self.finished_run(run_id, limit, until) is not None
        return ok(req_id, finished=finished, run=await self._read(db.read_run, run_id))

    async def finished_run(
        self, run_id: str, limit: float, until: frozenset[str] = FINISHED
    ) -> dict[str, Any] | None:
        """The run object once the run is finished (its status one of `until`), or None
        after `limit` seconds.

        The run is always read once, even with a limit of 0: a finished run is
        finished, however little the caller is willing to wait."""
        deadline = trio.current_time() + limit
        while True:
            event = trio.Event()
            self._watchers.setdefault(run_id, set()).add(event)
            try:
                run = await self._read(db.read_run, run_id, steps=False)
                if run["status"] in until:
                    return run
                with trio.move_on_at(deadline):
                    await event.wait()
                if not event.is_set():
                    return None
            finally:
                watchers = self._watchers.get(run_id)
                if watchers is not None:
                    watchers.discard(event)
                    if not watchers:
                        del self._watchers[run_id]

    async def run_internal(self, workflow: str, payload: bytes, run_id: str) -> dict[str, Any]:
        """Start (or retry) a run of a built-in workflow and wait for it to finish."""
        wf = self._workflows[workflow]
        now = self.clock.now_ms()
        _, status, _ = await self._write(
            self.store.create_run, workflow=workflow, payload=payload,
            max_attempts=wf.retries + 1, now=now, run_id=run_id,
        )  # fmt: skip
        if status in (RunStatus.FAILED, RunStatus.CANCELLED):
            await self._write(self.store.retry, run_id, now)
        self.pool.enqueue([run_id])
        while True:
            run = await self.finished_run(run_id, MAX_WAIT)
            if run is not None:
                return run

    async def status(self, req: Status) -> bytes:
        counts = await self._read(db.read_counts)
        next_wake = await self._read(db.read_next_wake)
        return ok(
            req.id,
            supervisor="running",
            pid=os.getpid(),
            workers=self.pool.live,
            runs=counts,
            next_wake_at=db.iso(next_wake),
            app=self.config.name,
            database=str(self.db_path),
        )

    # -- plumbing ---------------------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.committer.write(functools.partial(fn, *args, **kwargs))

    def submit_waking(
        self,
        want: int,
        ready_of: Callable[[T], list[str]],
        write: Callable[[], T],
        then: Callable[[T | BaseException, Woken], None],
        *,
        atomic: bool = False,
    ) -> None:
        """Queue a write that makes runs ready (`ready_of(result)` names them), with as
        many of them as a warm worker has room for (up to `want`) claimed in the same
        transaction; `then(result or error, woken)` runs once it is committed.

        This is the resume path: a signal, a decision, a timer or a start commits
        once, and the assignment goes out with that commit, instead of a second
        transaction (and fsync) for the claim. `then` passes `woken` to `hand_over`
        once its own events are out. `atomic`: `write` is atomic by itself (see
        `Committer.submit`), which spares it a savepoint when nothing is claimed."""
        slots, write_and_claim = self._claiming(want, ready_of, write)

        def done(item: Pending) -> None:
            if item.error is not None:
                if slots is not None:
                    self.pool.unreserve(slots)
                then(item.error, Woken(None, [], []))
                return
            result, assigns, rest = item.result
            then(result, Woken(slots, assigns, rest))

        atomic = atomic and slots is None
        self.committer.submit(write_and_claim, (), done, atomic=atomic)

    async def write_waking(
        self,
        want: int,
        ready_of: Callable[[T], list[str]],
        fn: Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> tuple[T, Woken]:
        """`submit_waking`, awaited: returns once committed (see `Committer.write`)."""
        write = functools.partial(fn, *args, **kwargs)
        slots, write_and_claim = self._claiming(want, ready_of, write)
        try:
            result, assigns, rest = await self.committer.write(write_and_claim)
        except BaseException:
            if slots is not None:
                self.pool.unreserve(slots)
            raise
        return result, Woken(slots, assigns, rest)

    def _claiming(
        self, want: int, ready_of: Callable[[T], list[str]], write: Callable[[], T]
    ) -> tuple[Slots | None, Callable[[], tuple[T, list[Assign], list[str]]]]:
        """Hold places for up to `want` runs, and wrap `write` so that it claims the runs
        it makes ready into them; returns (the places or None, the wrapped write)."""
        slots = self.pool.reserve(want)
        isolated = self.pool.isolated if slots is not None else frozenset()
        room = slots.count if slots is not None else 0
        now = self.clock.now_ms()

        def write_and_claim() -> tuple[T, list[Assign], list[str]]:
            result = write()
            ready = ready_of(result)
            take = [rid for rid in ready if rid not in isolated][:room]
            assigns = self.store.claim(take, now, self._held_because) if take else []
            return result, assigns, [rid for rid in ready if rid not in take]

        return slots, write_and_claim

    def hand_over(self, woken: Woken) -> None:
        """Send the runs claimed by `write_waking` to their worker; queue the rest."""
        self._emit_running(woken.assigns)
        if woken.slots is not None:
            self.pool.hand_over(woken.slots, woken.assigns)
        self.pool.enqueue(woken.rest)

    def _emit_running(self, assigns: list[Assign]) -> None:
        for a in assigns:
            if self._watchers:
                self.run_changed(a.run_id)
            self.emit("running", run_id=a.run_id, workflow=a.workflow, attempt=a.attempt)

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, self.store.reader, *args, **kwargs)
        return await trio.to_thread.run_sync(call, limiter=self._read_limiter)

    def check_payload(self, what: str, data: bytes | msgspec.Raw) -> None:
        """A JSON value from a client or a worker: within the size limit, and readable
        back by every reader. msgspec checks only the syntax of a Raw field: not the
        text encoding of its strings, nor that a number fits a float (`1e400`)."""
        self.check_size(what, data)
        check_json(what, data)

    def check_size(self, what: str, data: bytes | msgspec.Raw) -> None:
        limit = self.config.runs.max_payload
        if len(data) > limit:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes of JSON, over the {limit}-byte limit "
                "([runs] max_payload in tako.toml)"
            )

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one supervisor per process
    def _schema(self, text: str) -> Any:
        return json.loads(text)

    def check(self, schema: str, payload: bytes) -> str | None:
        return check_schema(self._schema(schema), msgspec.json.decode(payload))

    def _held_because(self, workflow: str) -> str | None:
        """Why runs of `workflow` cannot start now, or None when they can."""
        if workflow in self._workflows:
            return None
        broken = "; ".join(f"{e.file}:{e.line or '?'}: {e.message}" for e in self.registry.errors)
        if broken:
            return (
                f"workflow {workflow!r} is not loaded ({broken}); "
                "the run waits and resumes once the file is fixed"
            )
        return f"the app has no workflow named {workflow!r}; the run waits for it to come back"

    async def _claim(self, run_ids: list[str]) -> list[Any]:
        assigns = await self._write(
            self.store.claim, run_ids, self.clock.now_ms(), self._held_because
        )
        self._emit_running(assigns)
        return assigns

    async def _crashed(self, run_ids: list[str], alone: bool, reason: str) -> list[str]:
        requeued, failed = await self._write(
            self.store.crashed, run_ids, alone=alone, reason=reason, now=self.clock.now_ms()
        )
        for rid in failed:
            self.run_finished(rid, "failed", error=reason)
        self.emit("worker_lost", reason=reason, runs=len(run_ids))
        return requeued

    async def _next_wake(self) -> int | None:
        return await self._read(db.read_next_wake)

    async def _housekeeping(self) -> None:
        """Prune finished runs past `[runs] retention` and expired signals, now and hourly."""
        while True:
            now = self.clock.now_ms()
            retention_ms = int(self.config.runs.retention * 1000)
            try:
                pruned = await self._write(self.store.prune, now - retention_ms)
                await self._write(self.store.expire_signals, now)
            except StorageError as exc:  # a full disk: nothing to lose here, try later
                log.warning("housekeeping could not write (%s); retrying in a minute", exc)
                await trio.sleep(60)
                continue
            if pruned:
                self.emit("pruned", runs=pruned)
            await trio.sleep(3600)

    async def _wake_due(self, now: int) -> None:
        (_ready, timed_out), woken = await self.write_waking(
            self.config.workers.concurrency, _first, self.store.wake_due, now
        )
        try:
            self.approvals_changed()
            for rid, error in timed_out:
                for worker in self.pool.workers.values():
                    if rid in worker.in_flight:
                        self.pool.finished(worker, rid)
                self.run_finished(rid, "failed", error=error)
        finally:
            self.hand_over(woken)

    def run_finished(self, run_id: str, status: str = "", error: str | None = None) -> None:
        self.run_changed(run_id)
        if status:
            self.emit(status, run_id=run_id, error=error)

    def run_changed(self, run_id: str) -> None:
        """Wake whoever waits on this run (`wait`, `watch`): it changed (a step, a park, an end)."""
        for event in self._watchers.get(run_id, ()):
            event.set()

    def approvals_changed(self) -> None:
        """Approval events may wait in the outbox: wake their deliveries."""
        if self.webhook is not None:
            self.webhook.kick()
        self.notifiers.kick()
        self.access.approvals_changed()

    def emit(self, what: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(what, fields)
