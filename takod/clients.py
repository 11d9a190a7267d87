"""Client connections on the unix socket: read requests, dispatch them, write replies.

No domain logic here: each request is decoded, handed to the service (or to
the HTTP surface's operations in access.py) and its result framed as a reply.
Requests of one connection are answered concurrently, up to a limit past
which the connection is not read (backpressure); a start has no task of its
own and is answered from its commit callback.
"""

from __future__ import annotations

import logging
import os
import socket
import struct

import msgspec
import trio

from tako._errors import InvalidRequest, LineTooLarge, TakoError
from tako._protocol import (
    HTTP_OPS,
    Approve,
    Cancel,
    CancelApproval,
    ClientRequest,
    GetApproval,
    GetRun,
    ListApprovals,
    ListRuns,
    Metrics,
    Prune,
    Reject,
    RequestError,
    Retry,
    Schedules,
    Signal,
    Start,
    Status,
    Wait,
    Workflows,
    decode_client_request,
    fail,
    op_name,
)
from tako._replies import (
    ApprovalReply,
    ApprovalsReply,
    MetricsReply,
    PrunedReply,
    Reply,
    RunReply,
    RunsReply,
    SchedulesReply,
    SignalReply,
    StartReply,
    StatusReply,
    WaitReply,
    WorkflowsReply,
    encode_reply,
)
from tako.takod.access import Access
from tako.takod.catalog import Catalog
from tako.takod.connection import Connection
from tako.takod.rules.runs import FINISHED, PARKED
from tako.takod.service import Service
from tako.takod.storage.interface import Ask, Created

log = logging.getLogger("takod")
MAX_IN_PROGRESS = 512  # requests of one client connection being worked on at once


def peer_uid(stream: trio.SocketStream) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def as_error(req: ClientRequest, exc: BaseException) -> TakoError:
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


class Clients:
    def __init__(
        self,
        service: Service,
        access: Access,
        catalog: Catalog,
        *,
        app: str,
        database: str,
        max_line: int,
    ) -> None:
        self.service = service
        self.access = access
        self.catalog = catalog
        self.app = app
        self.database = database
        self.max_line = max_line

    async def serve(self, stream: trio.SocketStream) -> None:
        """Answer one client connection until it closes."""
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
                        req = decode_client_request(line)
                    except RequestError as exc:
                        conn.send(fail(exc.req_id, exc.error))
                        continue
                    try:  # no yield per request while under the limit: pipelines stay cheap
                        in_progress.acquire_nowait()
                    except trio.WouldBlock:
                        await in_progress.acquire()
                    if isinstance(req, Start):  # no task of its own: see Service.start
                        self._start(conn, req, in_progress)
                    else:
                        requests.start_soon(self._answer, conn, req, in_progress)
                if conn.closed:
                    requests.cancel_scope.cancel()
            if not conn.closed:
                await _all_answered(in_progress)
            conn.finish()

    async def _answer(
        self, conn: Connection, req: ClientRequest, in_progress: trio.Semaphore
    ) -> None:
        try:
            conn.send(await self.dispatch(req))
        except Exception as exc:
            conn.send(fail(req.id, as_error(req, exc)))
        finally:
            in_progress.release()

    def _start(self, conn: Connection, req: Start, in_progress: trio.Semaphore) -> None:
        def reply(result: Created | BaseException) -> None:
            in_progress.release()
            if isinstance(result, BaseException):
                conn.send(fail(req.id, as_error(req, result)))
            else:
                run_id, status, dedup = result
                conn.send(
                    encode_reply(
                        StartReply(id=req.id, run_id=run_id, status=status, deduplicated=dedup)
                    )
                )

        try:
            payload = bytes(req.payload)
            self.service.start(
                req.workflow, payload, reply, run_id=req.run_id, delay=req.delay,
                traceparent=req.traceparent,
            )  # fmt: skip
        except Exception as exc:
            reply(exc)

    async def dispatch(self, req: ClientRequest) -> bytes:
        """One client request's reply line."""
        if isinstance(req, HTTP_OPS):
            return encode_reply(await self.access.op(req))
        return encode_reply(await self._reply(req))

    async def _reply(self, req: ClientRequest) -> Reply:
        service, rid = self.service, req.id
        match req:
            case Signal():
                delivered, kept = await service.signal(
                    req.event, bytes(req.payload), run_id=req.run_id, ttl=req.ttl
                )
                return SignalReply(id=rid, delivered=delivered, kept=kept)
            case GetRun(run_id=run_id):
                return RunReply(id=rid, run=await service.read(lambda r: r.run(run_id)))
            case ListRuns(status=status, workflow=workflow, limit=limit):
                runs = await service.list_runs(status=status, workflow=workflow, limit=limit)
                return RunsReply(id=rid, runs=runs)
            case Cancel(run_id=run_id, reason=reason):
                return RunReply(id=rid, run=await service.cancel(run_id, reason))
            case Retry(run_id=run_id):
                return RunReply(id=rid, run=await service.retry(run_id))
            case Wait(run_id=run_id, timeout=timeout, until=until):
                settled = FINISHED | PARKED if until == "parked" else FINISHED
                finished, run = await service.wait(run_id, timeout, settled)
                return WaitReply(id=rid, finished=finished, run=run)
            case Status():
                now = await service.status()
                return StatusReply(
                    id=rid, supervisor="running", pid=os.getpid(), workers=now.workers,
                    runs=now.runs, next_wake_at=now.next_wake_at, app=self.app,
                    database=self.database,
                    supervisors=msgspec.UNSET if now.supervisors is None else now.supervisors,
                )  # fmt: skip
            case Schedules():
                return SchedulesReply(id=rid, schedules=await service.read(lambda r: r.schedules()))
            case Metrics():
                return MetricsReply(id=rid, text=(await service.metrics()).decode())
            case Workflows():
                registry = self.catalog.registry
                return WorkflowsReply(
                    id=rid, workflows=registry.of_the_app(), errors=registry.errors
                )
            case Approve() | Reject() | CancelApproval():
                return ApprovalReply(id=rid, approval=await service.decide(ask_of(req)))
            case ListApprovals():
                approvals = await service.read(
                    lambda r: r.approvals(
                        approver=req.approver, workflow=req.workflow, status=req.status,
                        limit=req.limit,
                    )
                )  # fmt: skip
                return ApprovalsReply(id=rid, approvals=approvals)
            case GetApproval(key=key):
                return ApprovalReply(id=rid, approval=await service.read(lambda r: r.approval(key)))
            case Prune(older_than=older_than):
                return PrunedReply(id=rid, pruned=await service.prune(older_than))
            case _:
                raise InvalidRequest(f"op {op_name(req)!r} is for worker processes only")


def ask_of(req: Approve | Reject | CancelApproval) -> Ask:
    """A decision request as the storage verb takes it."""
    match req:
        case Approve():
            value = bytes(req.value) if len(req.value) else None
            return Ask(
                action="approve", key=req.key, by=req.by, value=value,
                decision_id=req.decision_id, seen=req.seen,
            )  # fmt: skip
        case Reject():
            action = "reject"
        case CancelApproval():
            action = "cancel"
    return Ask(
        action=action, key=req.key, by=req.by, reason=req.reason,
        decision_id=req.decision_id, seen=req.seen,
    )  # fmt: skip
