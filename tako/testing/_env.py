"""The test kit's environment: a real supervisor on a stopped clock, in a thread.

`SyncEnv` holds the logic and blocks; `Env` runs each of its calls in a worker
thread (anyio), so one implementation serves asyncio, trio and plain tests.
The supervisor runs its own trio loop in a thread of the test process; its
workers are real subprocesses. Every call that changes something waits until
the runs it moved have parked or finished, so what a test reads next is
settled, never a moment in between.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import trio

from tako._client import _UNSET, Client
from tako._durations import Duration, parse_duration
from tako._errors import RunCancelled, RunFailed
from tako._records import Approval, Run, RunStatus, SignalResult
from tako.takod import serve, startup_error
from tako.takod.advance import advance, settle
from tako.takod.config import load_config
from tako.takod.scheduler import ManualClock
from tako.takod.supervisor import Supervisor

P = ParamSpec("P")
T = TypeVar("T")


class StillParked(AssertionError):
    """The test asked for a result while the run is still sleeping or waiting."""


class SyncEnv:
    """A real supervisor and real workers for `app_dir`, on a temporary data dir and
    a clock that moves only when the test calls `advance`. Blocking; see `Env`.

    `start_at` is the clock's first reading (default: now). The app's own
    `tako.toml` applies, except that runs always go to a fresh SQLite file (a
    `[storage] url` is ignored: tests must not share a database). `timeout`
    bounds every wait for runs to park or finish, in seconds or as "30s"."""

    def __init__(
        self,
        app_dir: str | os.PathLike[str] = ".",
        *,
        start_at: datetime | None = None,
        timeout: Duration = 30,
    ) -> None:
        self.app_dir = Path(app_dir).absolute()
        if not (self.app_dir / "workflows").is_dir():
            raise FileNotFoundError(
                f"{self.app_dir} has no workflows/ folder: pass the app's folder to the"
                " test kit (for the tako_env fixture: the tako_app_dir fixture or the"
                " tako_app_dir ini option)"
            )
        start_ms = None if start_at is None else int(start_at.timestamp() * 1000)
        self.clock = ManualClock(start_ms)
        self.timeout = parse_duration(timeout)
        self._data_dir: Path | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._supervisor: Supervisor | None = None
        self._stop: trio.Event | None = None
        self._failed: BaseException | None = None
        self.client: Client | None = None

    # -- life cycle -----------------------------------------------------------------------

    def open(self) -> SyncEnv:
        """Start the supervisor; returns once it accepts connections."""
        # the socket's path must stay short: a temp dir of our own, not pytest's
        self._data_dir = Path(tempfile.mkdtemp(prefix="tako-test-"))
        self._start()
        return self

    def _start(self) -> None:
        self._failed = None
        config = load_config(self.app_dir)
        config.storage.url = None
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(config, ready), name="tako.testing supervisor", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._failed is not None:
            self._cleanup()
            raise startup_error(self._failed) or self._failed
        assert self._supervisor is not None
        self.client = Client(self._supervisor.socket_path)

    def _main(self, config: Any, ready: threading.Event) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                serving = functools.partial(
                    serve, self.app_dir, self._data_dir, config=config, clock=self.clock
                )
                self._supervisor = await nursery.start(serving)
                ready.set()
                await self._stop.wait()
                await self._supervisor.drain(grace=0)
                nursery.cancel_scope.cancel()

        try:
            trio.run(main)
        except BaseException as exc:  # reported by open() or close()
            self._failed = exc
        finally:
            ready.set()

    def close(self) -> None:
        """Stop the supervisor and its workers and delete the temporary data dir."""
        self._stop_supervisor()
        self._cleanup()

    def restart(self, down_for: Duration = 0) -> None:
        """Stop the supervisor and its workers, move the clock on by `down_for` while
        nothing runs, and start them again on the same data dir: what a deploy or a
        crash does to runs, timers and schedules (ticks missed while down)."""
        self._stop_supervisor()
        self.clock.at_ms += int(parse_duration(down_for) * 1000)
        self._start()

    def _stop_supervisor(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._thread is not None and self._thread.is_alive() and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join()

    def _cleanup(self) -> None:
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> SyncEnv:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the clock ------------------------------------------------------------------------

    def now(self) -> datetime:
        """The supervisor's clock."""
        return datetime.fromtimestamp(self.clock.now_ms() / 1000, UTC)

    def advance(self, by: Duration) -> int:
        """Move the clock forward by `by` ("1d", "90m", seconds): every sleep, wait
        timeout, approval reminder, escalation and deadline and retry backoff due by
        then fires, in order, each after the runs the one before woke have settled.
        Returns how many due moments fired."""
        to_ms = self.clock.now_ms() + int(parse_duration(by) * 1000)
        return self._in_supervisor(advance, self._sup(), to_ms, self.timeout)

    def settle(self) -> None:
        """Wait until no run is running or ready to run (the clock stays put)."""
        self._in_supervisor(settle, self._sup(), self.timeout)

    # -- what a test does to runs -----------------------------------------------------------

    def start(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
    ) -> str:
        """Start a run; returns its id once it has parked or finished."""
        run = self._client().start(workflow, payload, run_id=run_id, delay=delay)
        self.settle()
        return run

    def signal(
        self,
        event: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        ttl: Duration | None = None,
    ) -> SignalResult:
        out = self._client().signal(event, payload, run_id=run_id, ttl=ttl)
        self.settle()
        return out

    def approve(self, key: str, *, by: str = "test", value: Any = _UNSET) -> Approval:
        client = self._client()
        out = (
            client.approve(key, by=by)
            if value is _UNSET
            else client.approve(key, by=by, value=value)
        )
        self.settle()
        return out

    def reject(self, key: str, *, by: str = "test", reason: str = "rejected by a test") -> Approval:
        out = self._client().reject(key, by=by, reason=reason)
        self.settle()
        return out

    def cancel(self, run_id: str, reason: str | None = None) -> Run:
        self._client().cancel(run_id, reason)
        self.settle()
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        """The run with its steps, once everything moving has settled."""
        self.settle()
        return self._client().get_run(run_id)

    def result(self, run_id: str) -> Any:
        """The run's result, as `tako.result` gives it (RunFailed, RunCancelled); a
        run still sleeping or waiting is a test failure that says what it waits for."""
        run = self.get_run(run_id)
        if run.status == RunStatus.FAILED:
            raise RunFailed(f"run {run_id} failed: {run.error}", run=run)
        if run.status == RunStatus.CANCELLED:
            raise RunCancelled(f"run {run_id} was cancelled: {run.error}", run=run)
        if not run.finished:
            raise StillParked(_parked(run, self.now()))
        return run.result

    def list_approvals(self, **filters: Any) -> list[Approval]:
        self.settle()
        return self._client().list_approvals(**filters)

    def get_approval(self, key: str) -> Approval:
        self.settle()
        return self._client().get_approval(key)

    # -- plumbing ---------------------------------------------------------------------------

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("the test environment is not open: use it in a with block")
        return self.client

    def _sup(self) -> Supervisor:
        self._client()
        assert self._supervisor is not None
        return self._supervisor

    def _in_supervisor(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError(f"the test supervisor has stopped: {self._failed!r}")
        return trio.from_thread.run(fn, *args, trio_token=self._token)


def _parked(run: Run, now: datetime) -> str:
    what = f"waiting for {run.waiting_for}" if run.waiting_for else str(run.status)
    until = f" until {run.wake_at.isoformat()}" if run.wake_at else ""
    return (
        f"run {run.run_id} is still {what}{until} (the test clock reads {now.isoformat()}):"
        " move the clock with `await env.advance(...)`, or signal or decide what it waits for"
    )


class Env:
    """`async with tako.testing.Env(app_dir) as env`: the test kit under asyncio or trio.

    The same as `SyncEnv` (its arguments, its methods), each method a coroutine;
    `env.sync` is the blocking form, for plain tests and fixtures."""

    def __init__(
        self,
        app_dir: str | os.PathLike[str] = ".",
        *,
        start_at: datetime | None = None,
        timeout: Duration = 30,
    ) -> None:
        self.sync = SyncEnv(app_dir, start_at=start_at, timeout=timeout)

    async def __aenter__(self) -> Env:
        await anyio.to_thread.run_sync(self.sync.open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await anyio.to_thread.run_sync(self.sync.close)

    def now(self) -> datetime:
        return self.sync.now()

    async def advance(self, by: Duration) -> int:
        return await _in_thread(self.sync.advance, by)

    async def settle(self) -> None:
        await _in_thread(self.sync.settle)

    async def restart(self, down_for: Duration = 0) -> None:
        await _in_thread(self.sync.restart, down_for)

    async def start(
        self,
        workflow: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        delay: Duration | None = None,
    ) -> str:
        return await _in_thread(self.sync.start, workflow, payload, run_id=run_id, delay=delay)

    async def signal(
        self,
        event: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        ttl: Duration | None = None,
    ) -> SignalResult:
        return await _in_thread(self.sync.signal, event, payload, run_id=run_id, ttl=ttl)

    async def approve(self, key: str, *, by: str = "test", value: Any = _UNSET) -> Approval:
        return await _in_thread(self.sync.approve, key, by=by, value=value)

    async def reject(
        self, key: str, *, by: str = "test", reason: str = "rejected by a test"
    ) -> Approval:
        return await _in_thread(self.sync.reject, key, by=by, reason=reason)

    async def cancel(self, run_id: str, reason: str | None = None) -> Run:
        return await _in_thread(self.sync.cancel, run_id, reason)

    async def get_run(self, run_id: str) -> Run:
        return await _in_thread(self.sync.get_run, run_id)

    async def result(self, run_id: str) -> Any:
        return await _in_thread(self.sync.result, run_id)

    async def list_approvals(self, **filters: Any) -> list[Approval]:
        return await _in_thread(self.sync.list_approvals, **filters)

    async def get_approval(self, key: str) -> Approval:
        return await _in_thread(self.sync.get_approval, key)


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
