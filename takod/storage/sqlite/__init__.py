"""The SQLite backend: one runs.db per app, WAL, one writer thread with group commit.

`SqliteBackend` is what the supervisor holds; `open_reads` is what the CLI
uses while the supervisor is down. All of the backend's SQL lives in this
folder: runs.py (writes on runs), approvals.py (requests, outbox, tokens),
reads.py (the read views), files.py (opening and migrating the file).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import trio

from tako.takod.storage.batch import Batched
from tako.takod.storage.interface import (
    ApprovalEvents,
    Peers,
    Reads,
    StoreError,
)
from tako.takod.storage.sqlite.committer import Committer
from tako.takod.storage.sqlite.files import open_read_only, open_writer
from tako.takod.storage.sqlite.reads import SqlReads
from tako.takod.storage.sqlite.runs import SqlTx

__all__ = ["SqliteBackend", "open_reads"]
T = TypeVar("T")


class SqliteBackend(Batched):
    """The storage seam on one SQLite file (see takod/storage/interface.py)."""

    def __init__(
        self, path: Path, *, durability: str = "full", events: ApprovalEvents | None = None
    ) -> None:
        self.path = path
        self.events = events or ApprovalEvents()
        self._conn = open_writer(path, durability)
        self.tx = SqlTx(self._conn, self.events)
        self.committer = Committer(self._conn, self.tx)
        self._reader: sqlite3.Connection | None = None
        # one reader connection, used by one thread at a time
        self._read_limiter = trio.CapacityLimiter(1)

    async def read(self, fn: Callable[[Reads], T]) -> T:
        reads = self.reads

        def call() -> T:
            return fn(reads)

        return await trio.to_thread.run_sync(call, limiter=self._read_limiter)

    @property
    def reads(self) -> SqlReads[sqlite3.Connection]:
        if self._reader is None:
            self._reader = open_read_only(self.path)
        return SqlReads(self._reader)

    def tell(self, kind: str, arg: str = "") -> None:
        pass  # one supervisor: nobody else to tell

    async def listen(self, peers: Peers) -> None:
        await trio.sleep_forever()

    async def database_time(self) -> None:
        return None  # one supervisor, one clock: its own

    def close(self) -> None:
        # the reader first: the writer, closing last, checkpoints the WAL and removes it
        if self._reader is not None:
            self._reader.close()
        self._conn.close()


@contextmanager
def open_reads(path: Path) -> Iterator[SqlReads[sqlite3.Connection]]:
    """The read views on runs.db, read-only (the supervisor may be down, or running).
    A file SQLite cannot read raises StoreError with SQLite's reason."""
    conn = open_read_only(path)
    try:
        yield SqlReads(conn)
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from None
    finally:
        conn.close()
