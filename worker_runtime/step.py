"""`Step`: what a handler uses to run, sleep and wait durably.

A run's handler is executed from the top every time the run is resumed. Each
step call computes its key (its name, plus `#n` for the n-th occurrence in
this execution) and looks it up in the memo takod sent with the assignment:
a finished step returns its stored result at once, without running again.
A step that has not finished runs, and its result is checkpointed (the
handler continues only once takod has committed it). Sleeping and waiting
send "park" and unwind the handler with `Parked`, a BaseException so that a
user's `except Exception:` cannot swallow it; the run is resumed later by a
new assignment.
"""

from __future__ import annotations

import inspect
import logging
import os
import random as _random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, overload

import anyio
import msgspec

from tako._durations import Duration, backoff_seconds, parse_duration
from tako._errors import (
    ApprovalRejected,
    NonRetryable,
    StaleClaim,
    StepFailed,
    SupervisorUnavailable,
)
from tako._protocol import ApprovalSpec, ChildSpec, MemoEntry, Park, StepDone
from tako._records import Decision, Event
from tako._tracecontext import current_traceparent
from tako.worker_runtime.failures import Unencodable, describe, encode_value
from tako.worker_runtime.results import (
    KINDS,
    child_result,
    decision_of,
    decode,
    decode_optional,
    is_typed,
)
from tako.worker_runtime.tracing import NO_TRACE, NoTrace
from tako.worker_runtime.wait_schema import wait_schema

if TYPE_CHECKING:
    from tako.worker_runtime.channel import Channel, Reply
    from tako.worker_runtime.loops import Loop

T = TypeVar("T")
ParkKind = Literal["sleep", "wait", "retry", "approval", "child"]
builtins_type = type  # `type` is a parameter name in the API below
MAX_NAME = 256
_logger = logging.getLogger("tako.run")


EXIT_OUT_OF_MEMORY = 86  # the worker's exit code after a MemoryError; takod reports it


def out_of_memory() -> NoReturn:
    """A process that ran out of memory cannot be trusted with its other runs: exit now.

    takod sees the exit code, requeues the innocent runs on a fresh worker and
    charges the run that did it, as for any crash."""
    os.write(2, b"tako worker: MemoryError in a step; exiting so takod can recover\n")
    os._exit(EXIT_OUT_OF_MEMORY)


class Parked(BaseException):
    """Unwinds a handler whose run was parked (sleep, wait, retry backoff)."""


class Dropped(BaseException):
    """Unwinds a handler whose run this worker no longer holds (cancelled, timed out, fenced)."""


class Bailed(BaseException):
    """Unwinds a handler that called step.bail(reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def now_ms() -> int:
    return int(time.time() * 1000)


class Step:
    """The durable operations of one run's execution."""

    def __init__(
        self,
        *,
        channel: Channel,
        run_id: str,
        workflow: str,
        attempt: int,
        token: int,
        memo: list[MemoEntry],
        max_payload: int,
        trace: NoTrace = NO_TRACE,
        clock_ms: int = 0,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.attempt = attempt
        self._channel = channel
        self._loop = channel.loop
        self._token = token
        self._memo = {m.key: m for m in memo}
        self._seen: dict[str, int] = {}
        self._seqs: dict[str, int] = {}
        self._max_payload = max_payload
        self.trace = trace  # the attempt's span (OpenTelemetry), parent of the steps' spans
        # takod's clock when it handed the run over (its clock is the one clock: the
        # database's on PostgreSQL, a test's moved one under tako.testing), and ours then
        self._clock = (clock_ms or int(time.time() * 1000), time.monotonic())
        # steps called but not awaited yet: {n: (method, name)}, n counting calls
        self._unawaited: dict[int, tuple[str, Any]] = {}
        self._calls = 0
        self.log = logging.LoggerAdapter(_logger, {"run_id": run_id, "step": "-"})

    def _called(self, method: str, name: Any) -> int:
        """Note a step call whose coroutine has not started yet (see `never_awaited`)."""
        n = self._calls
        self._calls = n + 1
        self._unawaited[n] = (method, name)
        return n

    def never_awaited(self) -> str | None:
        """Why the handler cannot have finished: a step it called but never awaited (its
        coroutine never ran, so the step silently did not happen), or None."""
        if not self._unawaited:
            return None
        method, name = next(iter(self._unawaited.values()))
        return f"step {name!r} was never awaited: write `await step.{method}(...)`"

    def _key(self, name: str) -> str:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
            raise ValueError(f"step name must be 1 to {MAX_NAME} characters of text, got {name!r}")
        n = self._seen.get(name, 0) + 1
        self._seen[name] = n
        key = name if n == 1 else f"{name}#{n}"
        self._seqs[key] = len(self._seqs)  # its place in this execution, for the timeline
        self.log.extra = {"run_id": self.run_id, "step": key}
        return key

    def _recorded(self, key: str, kind: str, method: str) -> MemoEntry | None:
        """The step recorded under `key`, if any. One recorded as another kind of step
        means the code changed under this run: handing its result to the new code
        would be a silently wrong answer, so the run fails, naming the step."""
        memo = self._memo.get(key)
        if memo is not None and memo.kind and memo.kind != kind:
            was = KINDS.get(memo.kind, memo.kind)
            raise NonRetryable(
                f"step {key!r} was recorded as {was} but the code now calls step.{method}"
                " with that name: the workflow's code changed under a run in flight. Keep"
                " the old step under its name (or give the new one another name), then"
                f" `tako runs retry {self.run_id}`"
            )
        return memo

    @overload
    def run(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any] | Any],
        *,
        retries: int = ...,
        timeout: Duration | None = ...,
        type: None = ...,
    ) -> Coroutine[Any, Any, Any]: ...
    @overload
    def run(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any] | Any],
        *,
        retries: int = ...,
        timeout: Duration | None = ...,
        type: type[T],
    ) -> Coroutine[Any, Any, T]: ...

    def run(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any] | Any],
        *,
        retries: int = 0,
        timeout: Duration | None = None,
        type: Any = None,
    ) -> Coroutine[Any, Any, Any]:
        """Run `fn` once, durably: its result is checkpointed and replayed from then on."""
        return self._run(self._called("run", name), name, fn, retries, timeout, type)

    async def _run(
        self,
        call: int,
        name: str,
        fn: Callable[[], Awaitable[Any] | Any],
        retries: int,
        timeout: Duration | None,
        type: Any,
    ) -> Any:
        del self._unawaited[call]
        key = self._key(name)
        seconds = parse_duration(timeout) if timeout is not None else None
        memo = self._recorded(key, "run", "run")
        attempt = 1
        if memo is not None:
            if memo.status == "completed":
                return decode(memo.result, type)
            if memo.status == "failed":
                raise StepFailed(f"step {key!r} failed: {memo.error}", step=key)
            attempt = memo.attempts + 1  # resumed after a retry backoff
        with self.trace.step(key, "run"):
            started = now_ms()
            try:
                value = await _call(self._loop, fn, seconds)
            except MemoryError:
                out_of_memory()
            except NonRetryable as exc:  # "fail the run now, no retry", even from inside a step
                await self._checkpoint(
                    key, name, "failed", b"null", describe(exc), attempt, started
                )
                raise
            except Exception as exc:
                error = describe(exc, seconds)
                if attempt <= retries:
                    await self._park(
                        key,
                        name,
                        "retry",
                        delay=int(backoff_seconds(attempt) * 1000),
                        attempts=attempt,
                        error=error,
                        started_at=started,
                    )
                    raise Parked from None
                await self._checkpoint(key, name, "failed", b"null", error, attempt, started)
                raise StepFailed(
                    f"step {key!r} failed after {attempt} attempt(s): {error}", step=key
                ) from exc
            try:
                raw = encode_value("step", key, value, self._max_payload)
            except Unencodable as exc:  # the step's fault, and a retry would return the same
                await self._checkpoint(key, name, "failed", b"null", str(exc), attempt, started)
                raise NonRetryable(str(exc)) from None
            await self._checkpoint(key, name, "completed", raw, None, attempt, started)
            return decode(raw, type)

    def sleep(self, name: str, duration: Duration) -> Coroutine[Any, Any, None]:
        """Park the run for `duration`; no worker is held while it sleeps."""
        return self._sleep_for(self._called("sleep", name), name, duration)

    async def _sleep_for(self, call: int, name: str, duration: Duration) -> None:
        del self._unawaited[call]
        key = self._key(name)
        await self._sleep(key, name, delay=int(parse_duration(duration) * 1000))

    def sleep_until(self, name: str, when: datetime | float) -> Coroutine[Any, Any, None]:
        """Park the run until `when` (an aware datetime, or seconds since the epoch)."""
        return self._sleep_until(self._called("sleep_until", name), name, when)

    async def _sleep_until(self, call: int, name: str, when: datetime | float) -> None:
        del self._unawaited[call]
        key = self._key(name)
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError("sleep_until needs a timezone-aware datetime (e.g. UTC)")
            wake = int(when.timestamp() * 1000)
        else:
            wake = int(float(when) * 1000)
        await self._sleep(key, name, wake_at=wake)

    async def _sleep(self, key: str, name: str, **when: int) -> None:
        """`delay=` ms from now by takod's clock, or `wake_at=` an instant the workflow chose."""
        if self._recorded(key, "sleep", "sleep") is not None:
            return
        with self.trace.step(key, "sleep"):
            parked = await self._park(key, name, "sleep", **when) is None
        if parked:
            raise Parked

    def wait_for(
        self, event: str, *, timeout: Duration | None = None, type: Any = None
    ) -> Coroutine[Any, Any, Any]:
        """Park until a signal named `event` arrives; its payload, or None on timeout."""
        return self._wait_for(self._called("wait_for", event), event, timeout, type)

    async def _wait_for(self, call: int, event: str, timeout: Duration | None, type: Any) -> Any:
        del self._unawaited[call]
        key = self._key(event)
        memo = self._recorded(key, "wait", "wait_for")
        if memo is not None:
            return decode_optional(bytes(memo.result), type)
        delay = int(parse_duration(timeout) * 1000) if timeout is not None else None
        schema = msgspec.Raw(msgspec.json.encode(wait_schema(type) if type else None))
        with self.trace.step(key, "wait"):
            raw = await self._park(key, event, "wait", delay=delay, event=event, schema=schema)
        if raw is None:
            raise Parked
        return decode_optional(raw, type)

    def wait_for_any(
        self, name: str, events: list[str], *, timeout: Duration | None = None
    ) -> Coroutine[Any, Any, Event | None]:
        """Park until the first signal named one of `events` arrives: that signal (an
        `Event`: `.name`, `.payload`), or None on timeout. Signals of the other events
        are not consumed (they are kept for a later wait, as any unawaited signal)."""
        return self._wait_for_any(self._called("wait_for_any", name), name, events, timeout)

    async def _wait_for_any(
        self, call: int, name: str, events: list[str], timeout: Duration | None
    ) -> Event | None:
        del self._unawaited[call]
        if isinstance(events, str) or not events or not all(isinstance(e, str) for e in events):
            raise ValueError(f"wait_for_any needs a list of event names, got {events!r}")
        key = self._key(name)
        memo = self._recorded(key, "wait_any", "wait_for_any")
        if memo is not None:
            return decode_optional(bytes(memo.result), Event)  # type: ignore[no-any-return]
        delay = int(parse_duration(timeout) * 1000) if timeout is not None else None
        with self.trace.step(key, "wait_any"):
            raw = await self._park(key, name, "wait", delay=delay, events=list(events))
        if raw is None:
            raise Parked
        return decode_optional(raw, Event)  # type: ignore[no-any-return]

    def approval(
        self,
        name: str,
        *,
        summary: str,
        data: Any = None,
        approvers: list[str] | None = None,
        required: int = 1,
        timeout: Duration | None = None,
        on_timeout: Literal["reject", "fail"] = "reject",
        remind_every: Duration | None = None,
        escalate_after: Duration | None = None,
        escalate_to: list[str] | None = None,
        type: Any = None,
    ) -> Coroutine[Any, Any, Decision]:
        """Ask people to decide; the run parks (holding nothing) until they do.

        The request's key is `<run_id>:<step key>`. With `type`, an edited value must
        convert to it, and `decision.value` is of that type."""
        return self._approval(
            self._called("approval", name), name, summary=summary, data=data,
            approvers=approvers, required=required, timeout=timeout, on_timeout=on_timeout,
            remind_every=remind_every, escalate_after=escalate_after, escalate_to=escalate_to,
            type=type,
        )  # fmt: skip

    async def _approval(
        self,
        call: int,
        name: str,
        *,
        summary: str,
        data: Any,
        approvers: list[str] | None,
        required: int,
        timeout: Duration | None,
        on_timeout: Literal["reject", "fail"],
        remind_every: Duration | None,
        escalate_after: Duration | None,
        escalate_to: list[str] | None,
        type: Any,
    ) -> Decision:
        del self._unawaited[call]
        key = self._key(name)
        memo = self._recorded(key, "approval", "approval")
        if memo is not None and memo.status == "completed":
            return decision_of(bytes(memo.result), type)
        if approvers is not None and required > len(approvers):
            raise ValueError(
                f"approval {name!r} needs {required} approvers but names {len(approvers)}"
            )
        spec = ApprovalSpec(
            summary=str(summary),
            data=msgspec.Raw(self._encode("approval", key, data)),
            approvers=list(approvers) if approvers is not None else None,
            required=required,
            timeout=parse_duration(timeout) if timeout is not None else None,
            on_timeout=on_timeout,
            remind_every=parse_duration(remind_every) if remind_every is not None else None,
            escalate_after=parse_duration(escalate_after) if escalate_after is not None else None,
            escalate_to=list(escalate_to) if escalate_to is not None else None,
            schema=msgspec.Raw(msgspec.json.encode(wait_schema(type) if type else None)),
        )
        with self.trace.step(key, "approval"):
            raw = await self._park(key, name, "approval", approval=spec)
        if raw is None:  # `tako dev` prints the parked event: step.log stays the user's
            raise Parked
        return decision_of(raw, type)

    async def gated(
        self,
        name: str,
        fn: Callable[[Any], Any],
        args: Any,
        *,
        requires_approval: Callable[[Any], bool],
        describe: Callable[[Any], str],
        type: Any = None,
        **approval: Any,
    ) -> Any:
        """Run `fn(args)` at once when `requires_approval(args)` is false; otherwise ask
        first (showing `describe(args)` and the args), then run `fn` with the approved,
        possibly edited, args. Raises ApprovalRejected when the answer is not yes."""
        if requires_approval(args):
            arg_type = type or (builtins_type(args) if is_typed(args) else None)
            decision = await self.approval(
                name, summary=describe(args), data=args, type=arg_type, **approval
            )
            if not decision.approved:
                raise ApprovalRejected(
                    f"{name} was {decision.status}"
                    + (f": {decision.reason}" if decision.reason else ""),
                    decision=decision,
                )
            args = decision.value
        approved_args = args
        return await self.run(f"{name}:run", lambda: fn(approved_args))

    # -- child runs ---------------------------------------------------------------------

    def invoke(
        self, name: str, workflow: str, payload: Any = None, *, run_id: str | None = None,
        type: Any = None,
    ) -> Coroutine[Any, Any, Any]:  # fmt: skip
        """Start a run of `workflow` and park until it ends: its result (converted to
        `type`); ChildFailed or ChildCancelled when it fails or is cancelled. Recorded
        like a step: a replay never starts a second child."""
        call = self._called("invoke", name)
        return self._child(call, name, workflow, payload, run_id, True, type)

    def start_child(
        self, name: str, workflow: str, payload: Any = None, *, run_id: str | None = None
    ) -> Coroutine[Any, Any, str]:
        """Start a run of `workflow` without waiting for it; returns its run id. Recorded
        like a step: a replay never starts a second child."""
        call = self._called("start_child", name)
        return self._child(call, name, workflow, payload, run_id, False, None)

    async def _child(
        self, call: int, name: str, workflow: str, payload: Any, run_id: str | None,
        wait: bool, type: Any,
    ) -> Any:  # fmt: skip
        del self._unawaited[call]
        key = self._key(name)
        kind, method = ("invoke", "invoke") if wait else ("child", "start_child")
        memo = self._recorded(key, kind, method)
        if memo is not None and memo.status == "completed":
            raw = bytes(memo.result)
        else:
            spec = ChildSpec(
                workflow=workflow, payload=msgspec.Raw(self._encode("payload", key, payload)),
                run_id=run_id, wait=wait, traceparent=current_traceparent(),
            )  # fmt: skip
            with self.trace.step(key, kind):
                parked = await self._park(key, name, "child", child=spec)
            if parked is None:
                raise Parked
            raw = parked
        return child_result(raw, workflow, type) if wait else decode(raw, str)

    # -- values a replay must see again ----------------------------------------------------

    def now(self) -> Coroutine[Any, Any, datetime]:
        """The current time (UTC, takod's clock), recorded like a step: a replay sees
        the same instant. Code between steps runs again on every replay, so it must
        not read the clock itself."""
        return self._value(
            "now", lambda: datetime.fromtimestamp(self._clock_now() / 1000, UTC), datetime
        )

    def uuid(self) -> Coroutine[Any, Any, uuid.UUID]:
        """A random UUID (version 4), recorded like a step."""
        return self._value("uuid", uuid.uuid4, uuid.UUID)

    def random(self) -> Coroutine[Any, Any, float]:
        """A random float in [0, 1), recorded like a step."""
        return self._value("random", _random.random, float)

    def _value(self, what: str, make: Callable[[], T], type: type[T]) -> Coroutine[Any, Any, T]:
        name = f"@{what}"  # `@now`, `@now#2`, ...: apart from the names of the app's steps
        return self._run(self._called(what, name), name, _on_the_loop(make), 0, None, type)

    def _clock_now(self) -> int:
        at_ms, at = self._clock
        return at_ms + int((time.monotonic() - at) * 1000)

    def bail(self, reason: str) -> NoReturn:
        """End the run now as `cancelled` with this reason; it is not retried."""
        raise Bailed(str(reason))

    # -- talking to takod --------------------------------------------------------

    def _encode(self, what: str, name: str, value: Any) -> bytes:
        try:
            return encode_value(what, name, value, self._max_payload)
        except Unencodable as exc:
            raise NonRetryable(str(exc)) from None

    async def _checkpoint(
        self,
        key: str,
        name: str,
        status: Literal["completed", "failed"],
        raw: bytes,
        error: str | None,
        attempts: int,
        started: int,
    ) -> None:
        reply = await self._channel.persist(
            StepDone(
                run_id=self.run_id,
                token=self._token,
                key=key,
                seq=self._seqs[key],
                name=name,
                status=status,
                result=msgspec.Raw(raw),
                error=error,
                attempts=attempts,
                started_at=started,
                finished_at=now_ms(),
            )
        )
        _check_reply(reply)

    async def _park(self, key: str, name: str, kind: ParkKind, **fields: Any) -> bytes | None:
        """Ask takod to park the run; returns the step's result instead when nothing needs
        waiting for (a sleep already due, a kept signal, a request already decided)."""
        fields.setdefault("started_at", now_ms())
        park = Park(
            run_id=self.run_id, token=self._token, key=key, seq=self._seqs[key], name=name,
            kind=kind, **fields,
        )  # fmt: skip
        reply = await self._channel.persist(park)
        _check_reply(reply)
        return None if reply.parked else bytes(reply.result)


def _on_the_loop(make: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`make` as an async function: a value is made on the loop, not in a thread."""

    async def made() -> T:
        return make()

    return made


async def _call(loop: Loop, fn: Callable[[], Any], timeout: float | None) -> Any:
    """Await an async fn on this loop; run a sync one in a thread. Bounded by `timeout`."""
    if timeout is None:  # the common case: no cancel scope to set up
        return await _invoke(loop, fn)
    with anyio.fail_after(timeout):
        return await _invoke(loop, fn)


async def _invoke(loop: Loop, fn: Callable[[], Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn()
    value = await loop.in_thread(fn)
    if inspect.isawaitable(value):  # a lambda returning a coroutine
        return await value
    return value


# the run is no longer ours, or the database is away (the run is taken back once it
# returns, and replays from its last checkpoint): stop quietly either way
_LET_GO = (StaleClaim.code, SupervisorUnavailable.code)


def _check_reply(reply: Reply) -> None:
    """Stop quietly when the run is no longer ours; surface any other refusal as an error."""
    if reply.cancel or (reply.error is not None and reply.error.code in _LET_GO):
        raise Dropped
    if not reply.ok:
        error = reply.error
        raise NonRetryable(error.message if error else "the supervisor refused the request")
