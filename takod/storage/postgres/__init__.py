"""The PostgreSQL backend: an app's runs in a schema of its own, shared by its supervisors.

The verbs are the SQLite backend's (written in the SQL both databases speak,
see takod/storage/sqlite/portable.py) run through psycopg, with PostgreSQL's
row locks where several supervisors may reach for the same row: decisions
serialise on the request, a waiter is resumed once, due timers and outbox
deliveries are taken with SKIP LOCKED. Writes are batched in one transaction
per batch by a writer thread, as on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
import trio

from tako.takod.storage.batch import Batched
from tako.takod.storage.interface import (
    ApprovalEvents,
    DatabaseUnavailable,
    Peers,
    Reads,
    StoreError,
)
from tako.takod.storage.postgres.committer import Committer
from tako.takod.storage.postgres.connection import PgConn, connect, schema_of
from tako.takod.storage.postgres.notices import Notices
from tako.takod.storage.postgres.schema import migrate, redact
from tako.takod.storage.sqlite.portable import POSTGRES
from tako.takod.storage.sqlite.reads import SqlReads
from tako.takod.storage.sqlite.runs import SqlTx

__all__ = ["PostgresBackend", "open_reads"]
T = TypeVar("T")


class PostgresBackend(Batched):
    """The storage seam on one PostgreSQL schema (see takod/storage/interface.py)."""

    def __init__(self, url: str, app: str, *, events: ApprovalEvents | None = None) -> None:
        self.url = url
        self.app = app
        self.events = events or ApprovalEvents()
        migrate(url, app)
        self.tx: SqlTx[PgConn] = SqlTx(self._connect(), self.events, POSTGRES)
        self.committer = Committer(self.tx, self._connect)
        self._reader: PgConn | None = None
        self._read_limiter = trio.CapacityLimiter(1)
        self.notices = Notices(url, app)

    def _connect(self, by_name: bool = False) -> PgConn:
        try:
            return connect(self.url, self.app, by_name=by_name)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database at {redact(self.url)}: {str(exc).strip()}"
            ) from None

    async def read(self, fn: Callable[[Reads], T]) -> T:
        def call() -> T:
            if self._reader is None or self._reader.raw.broken or self._reader.raw.closed:
                self._reader = self._connect(by_name=True)
            try:
                return fn(SqlReads(self._reader))
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(
                    f"the database cannot be reached ({str(exc).strip()})"
                ) from None

        return await trio.to_thread.run_sync(call, limiter=self._read_limiter)

    def tell(self, kind: str, arg: str = "") -> None:
        self.notices.tell(kind, arg)

    async def listen(self, peers: Peers) -> None:
        await self.notices.run(peers)

    async def database_time(self) -> int:
        """The database's `clock_timestamp()` in ms: every supervisor's one clock."""

        def now() -> int:
            if self._reader is None or self._reader.raw.broken or self._reader.raw.closed:
                self._reader = self._connect(by_name=True)
            try:
                row = self._reader.raw.execute(
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
                ).fetchone()
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(f"the database cannot be reached ({exc})") from None
            return int(row[0]) if row else 0

        return await trio.to_thread.run_sync(now, limiter=self._read_limiter)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.tx.conn.close()


@contextmanager
def open_reads(url: str, app: str) -> Iterator[SqlReads[PgConn]]:
    """The read views on the app's schema, without a supervisor."""
    try:
        conn = connect(url, app, by_name=True)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach the database at {redact(url)}: {exc}") from None
    try:
        schema = schema_of(app)
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", (schema,))
        if found.fetchone() is None:
            raise StoreError(
                f"{redact(url)} holds no schema {schema} for app {app!r} yet: run "
                "`tako db migrate` (or start a supervisor), or check the app's name"
            )
        yield SqlReads(conn)
    except psycopg.Error as exc:
        raise StoreError(str(exc).strip()) from None
    finally:
        conn.close()
