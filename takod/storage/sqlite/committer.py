"""The SQLite backend's writer: group commit (takod/storage/batch.py) on one connection."""

from __future__ import annotations

import sqlite3

from tako._errors import StorageError, TakoError
from tako.takod.storage.batch import BatchWriter
from tako.takod.storage.interface import Tx


class Committer(BatchWriter):
    """BEGIN IMMEDIATE ... COMMIT on the one writing connection."""

    database_errors = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection, tx: Tx) -> None:
        super().__init__(tx)
        self._conn = conn

    def begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def savepoint(self) -> None:
        self._conn.execute("SAVEPOINT op")

    def rollback_to(self) -> bool:
        if not self._conn.in_transaction:  # SQLite rolled it all back (a full disk)
            return False
        self._conn.execute("ROLLBACK TO op")
        return True

    def release(self) -> None:
        self._conn.execute("RELEASE op")

    def alive(self) -> bool:
        return self._conn.in_transaction

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def abandon(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def storage_error(self, exc: BaseException) -> TakoError:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return StorageError(f"the disk holding runs.db is full ({exc}); nothing was written")
        if isinstance(exc, sqlite3.Error):
            return StorageError(f"the database refused the write: {exc}")
        return super().storage_error(exc)
