"""The worker process: receives assigned runs, executes their handlers, exits when idle.

takod starts it with one end of a socket pair (`--fd`). The worker loads the
app, says hello, then runs every assignment as a task of its own until it
has had nothing in flight for `idle_timeout`; then it asks takod to leave
and exits 0. If takod goes away (the connection closes), it exits at once:
its runs are resumed by the next supervisor.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, UNIXSocketStream

from tako._errors import BadJson, InvalidRequest, NonRetryable
from tako._logs import JsonFormatter, wants_json
from tako._protocol import Assign, Beat, Finish, Hello, Keyed, Leaving
from tako.worker_runtime.channel import AsyncioChannel, Channel
from tako.worker_runtime.failures import (
    Unencodable,
    describe,
    encode_value,
    message,
    user_traceback,
)
from tako.worker_runtime.loader import load_app
from tako.worker_runtime.loops import for_runtime
from tako.worker_runtime.registry import WorkflowDef
from tako.worker_runtime.step import Bailed, Dropped, Parked, Step, out_of_memory
from tako.worker_runtime.tracing import NO_TRACE, NoTrace, start_run
from tako.worker_runtime.tracing import flush as flush_spans

log = logging.getLogger("tako.worker")
_REFUSED = (InvalidRequest.code, BadJson.code)  # takod's answers to a result it cannot store


class Worker:
    def __init__(
        self,
        channel: Channel,
        workflows: dict[str, WorkflowDef],
        *,
        runtime: str,
        idle_timeout: float,
        max_payload: int,
        lease: float = 30.0,
    ) -> None:
        self.lease = lease
        self.channel = channel
        self.workflows = workflows
        self.runtime = runtime
        self.idle_timeout = idle_timeout
        self.max_payload = max_payload
        self.in_flight = 0
        self.idle_since = time.monotonic()
        self._traces: dict[str, NoTrace] = {}  # run id -> its attempt's span (otel)
        self._tg: TaskGroup | None = None
        # On asyncio each run is a plain task: anyio's task group costs a cancel scope, an
        # event and a handle per task, a third of the worker's time when runs are short
        # (a crowd of timers waking to one step each). Cancelled with the group, below.
        self._tasks: set[asyncio.Task[None]] | None = set() if runtime == "asyncio" else None

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self.channel.write_loop)
                tg.start_soon(self._read_then_stop, tg)
                await self.channel.request(Hello(pid=os.getpid(), runtime=self.runtime))
                tg.start_soon(self._idle_loop, tg)
                tg.start_soon(self._beat_loop)
        finally:
            for task in self._tasks or ():
                task.cancel()

    async def _read_then_stop(self, tg: TaskGroup) -> None:
        await self.channel.read_loop(self._on_assign)
        tg.cancel_scope.cancel()  # takod went away: its successor resumes our runs

    def _on_assign(self, assign: Assign) -> None:
        assert self._tg is not None
        self.in_flight += 1
        if self._tasks is None:
            self._tg.start_soon(self._execute, assign)
            return
        task = asyncio.get_running_loop().create_task(self._execute(assign))
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    async def _idle_loop(self, tg: TaskGroup) -> None:
        while True:
            await anyio.sleep(max(0.05, self.idle_since + self.idle_timeout - time.monotonic()))
            if self.in_flight or time.monotonic() - self.idle_since < self.idle_timeout:
                continue
            reply = await self.channel.request(Leaving())
            if reply.ok:
                tg.cancel_scope.cancel()
                return
            self.idle_since = time.monotonic()

    async def _beat_loop(self) -> None:
        """While runs are in flight, tell takod we are alive (it fences us otherwise)."""
        while True:
            await anyio.sleep(self.lease / 3)
            if self.in_flight:
                await self.channel.request(Beat())

    async def _execute(self, assign: Assign) -> None:
        self._traces[assign.run_id] = start_run(assign)
        try:
            await self._run(assign)
        except Exception as exc:  # a fault in a run's error path: it fails alone, not us all
            log.exception("run %s: the worker could not report its outcome", assign.run_id)
            await self._finish(assign, "failed", error=f"worker error: {describe(exc)}")
        finally:
            self._traces.pop(assign.run_id, NO_TRACE).end()
            self.in_flight -= 1
            if not self.in_flight:
                self.idle_since = time.monotonic()

    async def _run(self, a: Assign) -> None:
        wf = self.workflows.get(a.workflow)
        if wf is None:
            await self._finish(a, "fatal", error=f"unknown workflow {a.workflow!r} in this worker")
            return
        step = Step(
            channel=self.channel,
            run_id=a.run_id,
            workflow=a.workflow,
            attempt=a.attempt,
            token=a.token,
            memo=a.memo,
            max_payload=self.max_payload,
            trace=self._traces.get(a.run_id, NO_TRACE),
            clock_ms=a.clock_ms,
        )
        try:
            payload = _decode_payload(a.payload, wf.payload_type)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            problem = (
                "cannot be decoded"
                if wf.payload_type is None
                else f"does not match {wf.payload_type.__name__}"
            )
            await self._finish(a, "fatal", error=f"payload {problem}: {exc}")
            return
        if a.keyed and wf.key is not None and not await self._keyed(a, wf.key, payload):
            return
        try:
            value = await wf.fn(payload, step)
        except (Parked, Dropped) as exc:
            step.trace.finished("parked" if isinstance(exc, Parked) else "dropped")
            return
        except Bailed as exc:
            await self._finish(a, "cancelled", error=exc.reason)
            return
        except NonRetryable as exc:
            await self._finish(a, "fatal", error=message(exc), tb=user_traceback(exc))
            return
        except MemoryError:
            out_of_memory()
        except Exception as exc:
            await self._finish(a, "failed", error=describe(exc), tb=user_traceback(exc))
            return
        unawaited = step.never_awaited()
        if unawaited is not None:  # the handler returned without doing that step
            await self._finish(a, "fatal", error=unawaited)
            return
        try:
            result = encode_value("workflow", a.workflow, value, self.max_payload)
        except Unencodable as exc:
            await self._finish(a, "fatal", error=str(exc))
            return
        await self._finish(a, "completed", result=result)

    async def _keyed(self, a: Assign, key_of: Callable[[Any], Any], payload: Any) -> bool:
        """Tell takod the run's concurrency key (`key=` of its workflow); False when the
        run may not go on now (its key is full: it waits its turn as pending)."""
        try:
            key = str(key_of(payload))
        except Exception as exc:
            error = f"the concurrency key of this run could not be computed: {describe(exc)}"
            await self._finish(a, "fatal", error=error, tb=user_traceback(exc))
            return False
        reply = await self.channel.persist(Keyed(run_id=a.run_id, token=a.token, key=key))
        if reply.ok and not reply.parked:
            return True
        self._traces.get(a.run_id, NO_TRACE).finished("held")
        return False

    async def _finish(
        self,
        a: Assign,
        outcome: Any,
        *,
        result: bytes = b"null",
        error: str | None = None,
        tb: str | None = None,
    ) -> None:
        self._traces.get(a.run_id, NO_TRACE).finished(outcome, error)
        reply = await self.channel.persist(
            Finish(
                run_id=a.run_id,
                token=a.token,
                outcome=outcome,
                result=msgspec.Raw(result),
                error=error,
                traceback=tb,
            )
        )
        refused = reply.error
        if refused is not None and refused.code in _REFUSED and result != b"null":
            # a result takod cannot store (a msgspec.Raw of `1e400`, say): fail the run
            await self._finish(a, "fatal", error=f"workflow {a.workflow!r}: {refused.message}")


def _decode_payload(raw: msgspec.Raw, payload_type: Any) -> Any:
    if payload_type is None:
        return msgspec.json.decode(raw)
    return msgspec.json.decode(raw, type=payload_type)


async def _main(
    app_dir: Path, fd: int, runtime: str, idle_timeout: float, max_payload: int, lease: float
) -> None:
    printed: dict[str, str] = {}
    workflows, _errors = load_app(app_dir, printed)
    for file, text in printed.items():  # to the `tako dev` terminal, labelled as at start
        sys.stderr.write("".join(f"{file} │ {line}\n" for line in text.rstrip("\n").split("\n")))
    loop = for_runtime(runtime, threads=128)
    sock = socket.socket(fileno=fd)
    channel: Channel
    if runtime == "asyncio":
        channel = await AsyncioChannel.open(sock, loop)
    else:
        channel = Channel(await UNIXSocketStream.from_socket(sock), loop)
    worker = Worker(
        channel,
        workflows,
        runtime=runtime,
        idle_timeout=idle_timeout,
        max_payload=max_payload,
        lease=lease,
    )
    await worker.serve()


class _RunContext(logging.Filter):
    """Give every record the fields the format names, so other loggers' records print too."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = getattr(record, "run_id", "-")
        record.step = getattr(record, "step", "-")
        return True


def _configure_logging() -> None:
    """step.log records go to stderr (the `tako dev` terminal) with their run id and step."""
    handler = logging.StreamHandler()
    handler.addFilter(_RunContext())
    handler.setFormatter(
        JsonFormatter()  # `tako serve --log-format json` set it for us
        if wants_json()
        else logging.Formatter(
            "%(asctime)s %(levelname)s [%(run_id)s %(step)s] %(name)s: %(message)s"
        )
    )
    if isinstance(sys.stderr, io.TextIOWrapper):  # a log line must never fail on its text
        sys.stderr.reconfigure(errors="backslashreplace")
    logger = logging.getLogger("tako.run")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _has_uvloop() -> bool:
    """uvloop (a dependency, except on Windows) runs the asyncio runtime: its loop spends
    less per wake-up, which every checkpoint pays twice (about 20 % of a sequential
    step, docs/performance.md). TAKO_NO_UVLOOP=1 keeps the standard loop."""
    if os.environ.get("TAKO_NO_UVLOOP"):
        return False
    return importlib.util.find_spec("uvloop") is not None


def run_worker(
    app_dir: Path,
    *,
    fd: int,
    runtime: str,
    idle_timeout: float,
    max_payload: int,
    lease: float = 30.0,
) -> None:
    _configure_logging()
    options = {"use_uvloop": _has_uvloop()} if runtime == "asyncio" else {}
    anyio.run(
        _main, app_dir, fd, runtime, idle_timeout, max_payload, lease,
        backend=runtime, backend_options=options,
    )  # fmt: skip
    # A step's thread may still be blocked in user code; its result could no longer be
    # checkpointed anyway (takod said goodbye or we said we were leaving), so don't wait for it.
    flush_spans()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
