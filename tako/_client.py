"""Clients of the supervisor: `Client` (blocking) and `AsyncClient` (asyncio or trio).

`Client` holds the logic: it builds each request, sends it over a pooled
unix socket connection and turns the reply into typed values or typed
errors. It is thread-safe: each call borrows a connection of its own.
`AsyncClient` adapts it by running each call in a worker thread (anyio), so
it works under asyncio and trio alike and the two can never drift apart.
"""

from __future__ import annotations

import functools
import os
import socket as _socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar, cast

import msgspec

from tako._durations import Duration, parse_duration
from tako._errors import InvalidRequest, RunCancelled, RunFailed, SupervisorUnavailable
from tako._paths import resolve_socket
from tako._protocol import (
    ABSENT,
    ApprovalLinks,
    Approve,
    Cancel,
    CancelApproval,
    ClientRequest,
    CreateToken,
    GetApproval,
    GetRun,
    ListApprovals,
    ListRuns,
    ListTokens,
    Prune,
    Reject,
    Retry,
    RevokeToken,
    Schedules,
    Scope,
    Signal,
    Start,
    Status,
    Wait,
    Workflows,
    non_finite,
)
from tako._records import (
    Approval,
    NewToken,
    Registry,
    Run,
    RunStatus,
    SignalResult,
    TokenInfo,
)
from tako._replies import (
    ApprovalReply,
    ApprovalsReply,
    LinksReply,
    NewTokenReply,
    PrunedReply,
    ReplyT,
    RevokedReply,
    RunReply,
    RunsReply,
    ScheduleRow,
    SchedulesReply,
    SignalReply,
    StartReply,
    StatusReply,
    TokensReply,
    WaitReply,
    WorkflowsReply,
    decode_reply,
)
from tako._tracecontext import current_traceparent

T = TypeVar("T")
_UNSET: Any = object()  # `value` not given (None is a value)
P = ParamSpec("P")
_encode = msgspec.json.Encoder().encode


class StartResult(msgspec.Struct):
    run_id: str
    status: str
    deduplicated: bool


class Client:
    """A connection to one supervisor, found by `socket`, `$TAKO_SOCKET` or the current folder."""

    def __init__(self, socket: str | os.PathLike[str] | None = None) -> None:
        self.socket_path = resolve_socket(socket)
        self._idle: list[_socket.socket] = []
        self._lock = threading.Lock()
        self._next_id = 0

    # -- the client API --------------------------------------------------------

    def start(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
    ) -> str:
        """Start a run and return its id (the existing run's id if `run_id` is taken)."""
        return self.start_run(workflow, payload, run_id=run_id, delay=delay).run_id

    def start_run(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
    ) -> StartResult:
        """Like `start`, and say whether the run already existed (`deduplicated`)."""
        seconds = None if delay is None else parse_duration(delay)
        request = Start(
            workflow=workflow, payload=_raw(payload), run_id=run_id, delay=seconds,
            traceparent=current_traceparent(),
        )  # fmt: skip
        reply = self.call(request, StartReply)
        return StartResult(reply.run_id, reply.status, reply.deduplicated)

    def signal(
        self,
        event: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        ttl: Duration | None = None,
    ) -> SignalResult:
        """Wake every run waiting on `event` (or only `run_id`); kept if nobody waits."""
        seconds = None if ttl is None else parse_duration(ttl)
        request = Signal(event=event, payload=_raw(payload), run_id=run_id, ttl=seconds)
        reply = self.call(request, SignalReply)
        return SignalResult(reply.delivered, reply.kept)

    def get_run(self, run_id: str) -> Run:
        return self.call(GetRun(run_id=run_id), RunReply[Run]).run

    def list_runs(
        self, status: str | None = None, workflow: str | None = None, limit: int = 100
    ) -> list[Run]:
        request = ListRuns(status=status, workflow=workflow, limit=limit)
        return self.call(request, RunsReply[Run]).runs

    def cancel(self, run_id: str, reason: str | None = None) -> Run:
        return self.call(Cancel(run_id=run_id, reason=reason), RunReply[Run]).run

    def retry(self, run_id: str) -> Run:
        return self.call(Retry(run_id=run_id), RunReply[Run]).run

    def wait(self, run_id: str, *, timeout: Duration | None = None, parked: bool = False) -> Run:
        """The run once it is finished (with `parked=True`: or sleeping or waiting);
        TimeoutError if `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + parse_duration(timeout)
        until: Literal["finished", "parked"] = "parked" if parked else "finished"
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self.call(Wait(run_id=run_id, timeout=left, until=until), WaitReply[Run])
            if reply.finished:
                return reply.run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {reply.run.status} after {timeout}")

    def result(self, run_id: str, *, timeout: Duration | None = None) -> Any:
        """Wait for the run and return its result; RunFailed / RunCancelled otherwise."""
        run = self.wait(run_id, timeout=timeout)
        if run.status == RunStatus.FAILED:
            raise RunFailed(f"run {run_id} failed: {run.error}", run=run)
        if run.status == RunStatus.CANCELLED:
            raise RunCancelled(f"run {run_id} was cancelled: {run.error}", run=run)
        return run.result

    def status(self) -> dict[str, Any]:
        return self.call(Status(), StatusReply).fields()

    def schedules(self) -> list[ScheduleRow]:
        """The app's cron schedules, the next due first, with their next and last ticks."""
        return self.call(Schedules(), SchedulesReply).schedules

    def workflows(self) -> Registry:
        reply = self.call(Workflows(), WorkflowsReply)
        return Registry(workflows=reply.workflows, errors=reply.errors)

    # -- approvals ------------------------------------------------------------

    def approve(
        self,
        key: str,
        *,
        by: str,
        value: Any = _UNSET,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> Approval:
        """Approve a request; with `value`, approve an edited value instead of its data.
        `seen`: the request's `digest` as you saw it; if its value changed since, the
        approval is refused (`Stale`)."""
        edited = ABSENT if value is _UNSET else _raw(value)
        request = Approve(key=key, by=by, value=edited, decision_id=decision_id, seen=seen)
        return self.call(request, ApprovalReply[Approval]).approval

    def reject(
        self,
        key: str,
        *,
        by: str,
        reason: str,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> Approval:
        request = Reject(key=key, by=by, reason=reason, decision_id=decision_id, seen=seen)
        return self.call(request, ApprovalReply[Approval]).approval

    def cancel_approval(
        self,
        key: str,
        *,
        by: str,
        reason: str | None = None,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> Approval:
        request = CancelApproval(key=key, by=by, reason=reason, decision_id=decision_id, seen=seen)
        return self.call(request, ApprovalReply[Approval]).approval

    def list_approvals(
        self,
        approver: str | None = None,
        workflow: str | None = None,
        status: str | None = "pending",
        limit: int = 100,
    ) -> list[Approval]:
        """Requests oldest first (pending ones by default); `approver`: those they may decide."""
        request = ListApprovals(approver=approver, workflow=workflow, status=status, limit=limit)
        return self.call(request, ApprovalsReply[Approval]).approvals

    def get_approval(self, key: str) -> Approval:
        return self.call(GetApproval(key=key), ApprovalReply[Approval]).approval

    def approval_links(self, key: str) -> dict[str, dict[str, str]]:
        """The signed links of a request: `{approver: {"view", "approve", "reject"}}`,
        one entry per approver, or `"*"` when anyone may decide."""
        return self.call(ApprovalLinks(key=key), LinksReply).links

    # -- API tokens for the HTTP surface ---------------------------------------------------

    def create_token(self, name: str, scopes: list[str]) -> NewToken:
        """A new token with these scopes (read, start, signal, decide, admin). Its
        `token` is in this reply only: takod keeps just its hash."""
        request = CreateToken(name=name, scopes=cast("list[Scope]", scopes))
        reply = self.call(request, NewTokenReply)
        return NewToken(name=reply.name, token=reply.token, scopes=reply.scopes)

    def list_tokens(self) -> list[TokenInfo]:
        return self.call(ListTokens(), TokensReply[TokenInfo]).tokens

    def revoke_token(self, name: str) -> None:
        """Revoke the token `name` at once; RunNotFound (code not_found) if there is none."""
        self.call(RevokeToken(name=name), RevokedReply)

    def prune(self, older_than: Duration | None = None) -> int:
        """Delete finished runs older than `older_than` (default: the app's retention)."""
        seconds = parse_duration(older_than) if older_than is not None else None
        return self.call(Prune(older_than=seconds), PrunedReply).pruned

    # -- the wire --------------------------------------------------------------------

    def call(self, request: ClientRequest, reply: type[ReplyT]) -> ReplyT:
        """Send one request; return its reply decoded as `reply`, or raise its typed error.

        The methods above are built on this; it is also the way to an op they do
        not cover, or to a reply in takod's own form (`RunReply[RunView]`)."""
        with self._lock:
            self._next_id += 1
            request.id = self._next_id
        return decode_reply(self._exchange(_encode(request) + b"\n"), reply)

    def _exchange(self, line: bytes) -> bytes:
        sock, reused = self._checkout()
        try:
            data = _roundtrip(sock, line)
        except OSError:
            sock.close()
            if not reused:
                raise SupervisorUnavailable(socket_path=str(self.socket_path)) from None
            sock, _ = self._connect(), False  # a pooled connection went stale: try a fresh one
            try:
                data = _roundtrip(sock, line)
            except OSError:
                sock.close()
                raise SupervisorUnavailable(socket_path=str(self.socket_path)) from None
        with self._lock:
            self._idle.append(sock)
        return data

    def _checkout(self) -> tuple[_socket.socket, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _connect(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise SupervisorUnavailable(socket_path=str(self.socket_path)) from None
        return sock

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _roundtrip(sock: _socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError("the supervisor closed the connection")
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


def _raw(payload: Any) -> msgspec.Raw:
    """A value as JSON; NaN and infinity are refused as takod would (JSON has neither,
    and msgspec would quietly send them as null)."""
    if isinstance(payload, timedelta):
        payload = payload.total_seconds()
    raw = _encode(payload)
    if b"null" in raw and non_finite(payload):
        raise InvalidRequest("the value holds NaN or infinity, which JSON cannot encode")
    return msgspec.Raw(raw)


class AsyncClient:
    """The `Client` API as coroutines, for asyncio and trio code alike."""

    def __init__(self, socket: str | os.PathLike[str] | None = None) -> None:
        self.sync = Client(socket)

    @property
    def socket_path(self) -> Path:
        return self.sync.socket_path

    async def start(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
    ) -> str:
        return await _in_thread(self.sync.start, workflow, payload, run_id=run_id, delay=delay)

    async def start_run(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
    ) -> StartResult:
        return await _in_thread(self.sync.start_run, workflow, payload, run_id=run_id, delay=delay)

    async def signal(
        self,
        event: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        ttl: Duration | None = None,
    ) -> SignalResult:
        return await _in_thread(self.sync.signal, event, payload, run_id=run_id, ttl=ttl)

    async def get_run(self, run_id: str) -> Run:
        return await _in_thread(self.sync.get_run, run_id)

    async def list_runs(
        self, status: str | None = None, workflow: str | None = None, limit: int = 100
    ) -> list[Run]:
        return await _in_thread(self.sync.list_runs, status, workflow, limit)

    async def cancel(self, run_id: str, reason: str | None = None) -> Run:
        return await _in_thread(self.sync.cancel, run_id, reason)

    async def retry(self, run_id: str) -> Run:
        return await _in_thread(self.sync.retry, run_id)

    async def wait(
        self, run_id: str, *, timeout: Duration | None = None, parked: bool = False
    ) -> Run:
        return await _in_thread(self.sync.wait, run_id, timeout=timeout, parked=parked)

    async def result(self, run_id: str, *, timeout: Duration | None = None) -> Any:
        return await _in_thread(self.sync.result, run_id, timeout=timeout)

    async def status(self) -> dict[str, Any]:
        return await _in_thread(self.sync.status)

    async def schedules(self) -> list[ScheduleRow]:
        return await _in_thread(self.sync.schedules)

    async def workflows(self) -> Registry:
        return await _in_thread(self.sync.workflows)

    async def approve(
        self,
        key: str,
        *,
        by: str,
        value: Any = _UNSET,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> Approval:
        return await _in_thread(
            self.sync.approve, key, by=by, value=value, decision_id=decision_id, seen=seen
        )

    async def reject(
        self,
        key: str,
        *,
        by: str,
        reason: str,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> Approval:
        return await _in_thread(
            self.sync.reject, key, by=by, reason=reason, decision_id=decision_id, seen=seen
        )

    async def cancel_approval(
        self,
        key: str,
        *,
        by: str,
        reason: str | None = None,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> Approval:
        return await _in_thread(
            self.sync.cancel_approval,
            key,
            by=by,
            reason=reason,
            decision_id=decision_id,
            seen=seen,
        )

    async def list_approvals(
        self,
        approver: str | None = None,
        workflow: str | None = None,
        status: str | None = "pending",
        limit: int = 100,
    ) -> list[Approval]:
        return await _in_thread(self.sync.list_approvals, approver, workflow, status, limit)

    async def get_approval(self, key: str) -> Approval:
        return await _in_thread(self.sync.get_approval, key)

    async def approval_links(self, key: str) -> dict[str, dict[str, str]]:
        return await _in_thread(self.sync.approval_links, key)

    async def create_token(self, name: str, scopes: list[str]) -> NewToken:
        return await _in_thread(self.sync.create_token, name, scopes)

    async def list_tokens(self) -> list[TokenInfo]:
        return await _in_thread(self.sync.list_tokens)

    async def revoke_token(self, name: str) -> None:
        await _in_thread(self.sync.revoke_token, name)

    async def prune(self, older_than: Duration | None = None) -> int:
        return await _in_thread(self.sync.prune, older_than)

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        self.sync.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sync.close()


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    import anyio.to_thread  # imported here: a worker that never uses AsyncClient skips it

    return await anyio.to_thread.run_sync(
        functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
    )
