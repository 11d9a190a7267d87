"""The SQLite backend's file: marked as ours, migrated, WAL; a stranger's file refused
untouched; read-only reads for the CLI while the supervisor is down.

What a backend does with runs is tested once for every backend in tests/storage;
this is what only the SQLite file has.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tako._errors import RunNotFound
from tako.takod.storage import StoreError, open_backend, open_reads
from tako.takod.storage.interface import NewRun
from tako.takod.storage.sqlite import SqliteBackend
from tako.takod.storage.sqlite import open_reads as sqlite_reads
from tako.takod.storage.sqlite.files import APPLICATION_ID, migrations, open_read_only
from tests.storage.kit import serving

NOW = 1_800_000_000_000


@asynccontextmanager
async def running(path: Path, durability: str = "full") -> AsyncIterator[SqliteBackend]:
    async with serving(SqliteBackend(path, durability=durability)) as backend:
        yield backend


async def start(backend: SqliteBackend, run_id: str = "order-42") -> str:
    new = NewRun("fulfill-order", b'{"order": 42}', 1, run_id)
    return (await backend.write(lambda tx: tx.create_run(new, NOW))).run_id


def pragma(path: Path, name: str) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


async def test_a_new_store_is_marked_as_ours_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "apps" / "shop" / "runs.db"
    async with running(path) as backend:
        rid = await start(backend)
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "user_version") == len(migrations())
    assert pragma(path, "journal_mode") == "wal"
    async with running(path) as backend:
        assert (await backend.read(lambda r: r.run(rid))).status == "pending"


async def test_closing_checkpoints_the_wal_away(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with running(path) as backend:
        await start(backend)
        await backend.read(lambda r: r.counts())  # the reader is open too
        assert Path(f"{path}-wal").exists()
    assert sorted(os.listdir(tmp_path)) == ["runs.db"]


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
def test_durability_sets_how_often_sqlite_syncs(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    backend = SqliteBackend(tmp_path / "runs.db", durability=durability)
    try:
        assert backend._conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    finally:
        backend.close()


def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
    conn.execute("INSERT INTO invoices (total) VALUES (120)")
    conn.commit()
    conn.close()


def _newer_tako(path: Path) -> None:
    open_backend(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(migrations()) + 1}")
    conn.close()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "not a tako database"),
        (lambda p: p.write_bytes(b"name,total\norder-42,120\n"), "not a tako database"),
        (lambda p: p.write_bytes(b"\0" * 4096), "not a tako database"),
        (_foreign_sqlite, "not created by tako"),
        (_newer_tako, "newer"),
    ],
    ids=["random-bytes", "csv-text", "zeros", "foreign-sqlite", "newer-tako"],
)
def test_a_file_that_is_not_our_database_is_refused_untouched(
    tmp_path: Path, make: Callable[[Path], Any], why: str
) -> None:
    path = tmp_path / "runs.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=why) as info:
        open_backend(path)
    assert info.value.code == "storage"
    assert str(path) in info.value.message
    assert path.read_bytes() == before


def test_a_one_byte_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"x")
    with pytest.raises(StoreError):
        open_backend(path).close()
    assert path.read_bytes() == b"x"


async def test_an_empty_file_becomes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"")
    async with running(path) as backend:
        assert await backend.read(lambda r: r.next_wake()) is None
    assert path.stat().st_size > 0
    assert pragma(path, "application_id") == APPLICATION_ID


# -- reading while the supervisor is down --------------------------------------------------


def test_open_read_only_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        open_read_only(tmp_path / "missing.db")
    with pytest.raises(StoreError, match="no database"), open_reads(tmp_path / "missing.db"):
        pass
    assert not (tmp_path / "missing.db").exists()


async def test_open_reads_sees_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with running(path) as backend:
        rid = await start(backend)
        with open_reads(path) as reads:  # the supervisor is up: the CLI reads beside it
            assert reads.run(rid).status == "pending"
    with open_reads(path) as reads:  # and down
        assert reads.counts() == {"pending": 1}
        with pytest.raises(RunNotFound):
            reads.run("nope")


def test_open_reads_on_a_file_sqlite_cannot_read_says_why(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"name,total\norder-42,120\n" * 200)
    with pytest.raises(StoreError, match="not a database"), open_reads(path) as reads:
        reads.counts()
    assert path.read_bytes() == b"name,total\norder-42,120\n" * 200


async def test_the_read_only_connection_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with running(path) as backend:
        await start(backend)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            backend.reads.conn.execute("DELETE FROM runs")
        assert await backend.read(lambda r: r.counts()) == {"pending": 1}
    with sqlite_reads(path) as reads:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reads.conn.execute("DELETE FROM runs")
        assert reads.counts() == {"pending": 1}
