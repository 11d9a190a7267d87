"""The PostgreSQL backend's writer: group commit (takod/storage/batch.py) on one connection.

PostgreSQL aborts a whole transaction on a failed statement, so every write
but an atomic one runs in a savepoint of its own; a lost connection fails the
batch with `unavailable`, and the next batch reconnects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import psycopg

from tako._errors import StorageError, TakoError
from tako.takod.storage.batch import BatchWriter
from tako.takod.storage.interface import DatabaseUnavailable, QueuedWrite, StepSaved
from tako.takod.storage.postgres.connection import PgConn, translate
from tako.takod.storage.sqlite.portable import POSTGRES
from tako.takod.storage.sqlite.runs import SqlTx
from tako.takod.storage.sqlite.steps import save_step_if_held, save_step_params

PIPELINED_SAVE = translate(save_step_if_held(POSTGRES) + " RETURNING run_id")


class Committer(BatchWriter):
    database_errors = (psycopg.Error,)

    def __init__(self, tx: SqlTx[PgConn], reconnect: Callable[[], PgConn]) -> None:
        super().__init__(tx)
        self.sql = tx
        self._reconnect = reconnect

    @property
    def conn(self) -> PgConn:
        return self.sql.conn

    def begin(self) -> None:
        if self.conn.raw.closed or self.conn.raw.broken:
            self.sql.conn = self._reconnect()
        self.conn.raw.execute("BEGIN")

    def savepoint(self) -> None:
        self.conn.raw.execute("SAVEPOINT op")

    def rollback_to(self) -> bool:
        if self.conn.raw.broken:
            return False
        self.conn.raw.execute("ROLLBACK TO SAVEPOINT op")
        return True

    def release(self) -> None:
        self.conn.raw.execute("RELEASE SAVEPOINT op")

    def commit(self) -> None:
        self.conn.raw.execute("COMMIT")

    def abandon(self) -> None:
        if not self.conn.raw.broken and not self.conn.raw.closed:
            with contextlib.suppress(psycopg.Error):  # it is going anyway
                self.conn.raw.execute("ROLLBACK")

    def write_checkpoints(self, batch: list[QueuedWrite[Any]]) -> set[QueuedWrite[Any]]:
        """The batch's checkpoints in one pipeline (psycopg's executemany): one round trip
        instead of one each. Those the fast path did not save (the run is no longer held,
        a cancel waits) go their usual way afterwards, and find out why."""
        items = [item for item in batch if item.checkpoint is not None]
        if len(items) < 2:
            return set()
        params = [save_step_params(*item.checkpoint) for item in items if item.checkpoint]
        saved: list[bool] = []
        with self.conn.raw.cursor() as cur:
            cur.executemany(PIPELINED_SAVE, params, returning=True)
            while True:
                saved.append(cur.fetchone() is not None)
                if not cur.nextset():
                    break
        written = set()
        for item, ok in zip(items, saved, strict=True):
            if ok:
                item.result = StepSaved.SAVED
                written.add(item)
        return written

    def conflict(self, exc: BaseException) -> bool:
        return isinstance(
            exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        )

    def storage_error(self, exc: BaseException) -> TakoError:
        if isinstance(exc, psycopg.OperationalError) or self.conn.raw.broken:
            return DatabaseUnavailable(
                f"the database cannot be reached ({str(exc).strip()}); nothing was written"
            )
        if isinstance(exc, psycopg.Error):
            return StorageError(f"the database refused the write: {str(exc).strip()}")
        return super().storage_error(exc)
