"""Group commit: many callers' writes share one transaction and one fsync.

Callers `await committer.write(fn, *args)`. A single trio task takes every
write queued so far, runs them on one thread inside one transaction (each in
its own SAVEPOINT, so one failing write does not undo its neighbours),
commits, and only then wakes the callers. While a batch commits, the next one
collects: the busier the supervisor, the bigger each batch.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from tako._errors import StorageError, TakoError

T = TypeVar("T")
log = logging.getLogger("takod")


class Pending:
    """One write: what to run, then (after the commit) its result or error for `on_done`."""

    __slots__ = ("args", "error", "fn", "on_done", "result")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: Callable[[Pending], None]
    ) -> None:
        self.fn = fn
        self.args = args
        self.on_done = on_done
        self.result: Any = None
        self.error: BaseException | None = None


class Committer:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._queue: list[Pending] = []
        self._wakeup = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False
        self.batches = 0
        self.writes = 0

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the next transaction; return once it is committed.

        The wait is shielded from cancellation: once queued, a write commits
        whatever happens to its caller, so the caller must see it through (a
        worker dying mid-request must not leave a committed park unaccounted).
        """
        if self._closed:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise StorageError("the supervisor is stopping; nothing was written")
        done = trio.Event()
        item = self.submit(fn, args, lambda _: done.set())
        with trio.CancelScope(shield=True):
            await done.wait()
        if item.error is not None:
            await trio.lowlevel.checkpoint_if_cancelled()  # stopping: say Cancelled, not why
            raise item.error
        return item.result  # type: ignore[no-any-return]

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: Callable[[Pending], None]
    ) -> Pending:
        """Queue `fn(*args)` for the next transaction; `on_done(item)` runs after the commit.

        The hot path (a worker's checkpoints) uses this directly: no task and no
        event per write, just a callback that sends the reply."""
        item = Pending(fn, args, on_done)
        if self._closed:
            item.error = StorageError("the supervisor is stopping; nothing was written")
            on_done(item)
            return item
        self._queue.append(item)
        self._wakeup.set()
        return item

    async def run(self) -> None:
        """The committer task: lives as long as the supervisor."""
        try:
            await self._loop()
        finally:
            self._closed = True
            queued, self._queue = self._queue, []
            for item in queued:
                item.error = StorageError("the supervisor is stopping; nothing was written")
                _done(item)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            with trio.CancelScope(shield=True):  # a batch taken is a batch seen through
                await trio.to_thread.run_sync(self._commit, batch, limiter=self._limiter)
            self.batches += 1
            self.writes += len(batch)
            for item in batch:
                _done(item)

    def _commit(self, batch: list[Pending]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                conn.execute("SAVEPOINT op")
                try:
                    item.result = item.fn(*item.args)
                except TakoError as exc:
                    conn.execute("ROLLBACK TO op")
                    item.error = exc
                except Exception as exc:
                    if not conn.in_transaction:
                        raise  # SQLite rolled the whole batch back (a full disk): report that
                    conn.execute("ROLLBACK TO op")
                    item.error = _storage_error(exc)
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = _storage_error(exc)
            for item in batch:
                item.error = error


def _done(item: Pending) -> None:
    try:
        item.on_done(item)
    except Exception:  # one caller's bug must not stop the others' replies
        log.exception("a write's completion failed")


def _storage_error(exc: BaseException) -> TakoError:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StorageError(f"the disk holding runs.db is full ({exc}); nothing was written")
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"the database refused the write: {exc}")
    return TakoError(f"internal error: {type(exc).__name__}: {exc}")
