"""takod.committer.Committer with its real writer thread, on a real SQLite file.

To control what lands in one batch, a first write holds the writer thread
inside its transaction (a `Gate`) while the test queues more: everything queued
meanwhile must join the next transaction together.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tako._errors import NotAllowed, StorageError, TakoError
from takod.committer import Committer, Pending


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE item (name TEXT PRIMARY KEY, parent INTEGER"
        " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.close()
    yield path


@asynccontextmanager
async def committer(db: Path) -> AsyncIterator[tuple[Committer, sqlite3.Connection]]:
    """A running committer on `db`, and a separate connection that sees only commits."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    reader = sqlite3.connect(db, isolation_level=None)
    c = Committer(conn)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.run)
            yield c, reader
            nursery.cancel_scope.cancel()
    finally:
        reader.close()
        conn.close()


class Gate:
    """A write that holds the writer thread (inside its transaction) until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"
        return "gate"

    async def wait_entered(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.wait, 30)


def names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM item ORDER BY name")]


def insert(conn: sqlite3.Connection, name: str, parent: int | None = None) -> str:
    conn.execute("INSERT INTO item (name, parent) VALUES (?, ?)", (name, parent))
    return name


def insert_then_refuse(conn: sqlite3.Connection, name: str) -> None:
    insert(conn, name)
    raise NotAllowed(f"{name} is refused")


def insert_then_crash(conn: sqlite3.Connection, name: str) -> None:
    insert(conn, name)
    raise ValueError(f"{name} has a bug")


async def test_writes_queued_during_a_commit_join_the_next_transaction(db: Path) -> None:
    async with committer(db) as (c, reader):
        gate = Gate()
        seen: dict[str, int] = {}  # each write's batch number, when its caller is answered

        def record(item: Pending) -> None:
            seen[str(item.result)] = c.batches

        c.submit(gate, (), record)
        await gate.wait_entered()
        for name in ("a", "b", "c"):
            c.submit(insert, (c._conn, name), record)
        gate.open.set()
        assert await c.write(insert, c._conn, "d") == "d"  # queued after all of them
        assert names(reader) == ["a", "b", "c", "d"]
    assert seen == {"gate": 1, "a": 2, "b": 2, "c": 2}
    assert c.writes == 5


async def test_a_failing_write_is_rolled_back_alone(db: Path) -> None:
    async with committer(db) as (c, reader):
        gate = Gate()
        done: list[Pending] = []
        c.submit(gate, (), done.append)
        await gate.wait_entered()
        c.submit(insert, (c._conn, "a"), done.append)
        c.submit(insert_then_refuse, (c._conn, "b"), done.append)
        c.submit(insert_then_crash, (c._conn, "c"), done.append)
        c.submit(insert, (c._conn, "d"), done.append)
        gate.open.set()
        await c.write(insert, c._conn, "e")
        assert names(reader) == ["a", "d", "e"]  # b's and c's rows went with their errors
    assert [(i.result, type(i.error)) for i in done] == [
        ("gate", type(None)),
        ("a", type(None)),
        (None, NotAllowed),
        (None, TakoError),
        ("d", type(None)),
    ]
    assert "ValueError: c has a bug" in str(done[3].error)  # a bug says what it was
    assert c.batches in (2, 3)  # "e" may have caught the batch of the others


async def test_a_batch_that_cannot_commit_fails_each_caller(db: Path) -> None:
    """COMMIT itself fails (here a deferred foreign key; in production a full disk):
    nothing of the batch is written, and every caller raises, none hears success."""
    async with committer(db) as (c, reader):
        gate = Gate()
        results: dict[str, Any] = {}

        async def write(name: str, parent: int | None) -> None:
            try:
                results[name] = await c.write(insert, c._conn, name, parent)
            except StorageError as exc:
                results[name] = exc

        c.submit(gate, (), lambda _: None)
        await gate.wait_entered()
        async with trio.open_nursery() as nursery:
            for name, parent in (("a", None), ("orphan", 404), ("b", None)):
                nursery.start_soon(write, name, parent)
            await trio.testing.wait_all_tasks_blocked()  # all three are queued
            gate.open.set()
        assert names(reader) == []
        assert await c.write(insert, c._conn, "after") == "after"  # the next batch is fine
        assert names(reader) == ["after"]
    assert set(results) == {"a", "orphan", "b"}
    for name, outcome in results.items():
        assert isinstance(outcome, StorageError), (name, outcome)
        assert "FOREIGN KEY" in str(outcome)


async def test_callers_are_answered_after_the_commit_in_the_order_they_wrote(db: Path) -> None:
    async with committer(db) as (c, reader):
        gate = Gate()
        answered: list[tuple[str, list[str]]] = []

        def on_done(item: Pending) -> None:
            # what a separate connection sees now: only committed rows
            answered.append((str(item.result), names(reader)))

        c.submit(gate, (), on_done)
        await gate.wait_entered()
        order = ["m", "c", "x", "a", "q"]
        for name in order:
            c.submit(insert, (c._conn, name), on_done)
        gate.open.set()
        await c.write(lambda: None)
    assert [name for name, _ in answered] == ["gate", *order]
    for name, visible in answered[1:]:
        assert visible == sorted(order), f"{name} was answered before its commit"


async def test_early_answers_go_out_after_the_commit_in_one_write_per_sink(db: Path) -> None:
    class Sink:
        def __init__(self, reader: sqlite3.Connection) -> None:
            self.reader = reader
            self.writes: list[tuple[bytes, list[str]]] = []

        def send_threadsafe(self, data: bytes) -> None:  # on the writer thread
            self.writes.append((data, names(self.reader)))

    db_reader = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    sink = Sink(db_reader)
    try:
        async with committer(db) as (c, _):
            gate = Gate()
            c.submit(gate, (), lambda _: None)
            await gate.wait_entered()
            items = [
                c.submit(
                    insert,
                    (c._conn, name),
                    lambda _: None,
                    early=lambda item: (sink, f"{item.result};".encode()),
                )
                for name in ("a", "b")
            ]
            refused = c.submit(
                insert_then_refuse, (c._conn, "c"), lambda _: None, early=lambda _: (sink, b"!")
            )
            gate.open.set()
            await c.write(lambda: None)
    finally:
        db_reader.close()
    assert sink.writes == [(b"a;b;", ["a", "b"])]  # one write, after the commit
    assert [i.answered for i in items] == [True, True]
    assert not refused.answered  # a failed write is answered in trio, with its error
