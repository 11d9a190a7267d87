"""The SQLite backend's Committer with its real writer thread, on a real SQLite file.

To control what lands in one batch, a first write holds the writer thread
inside its transaction (a `Gate`) while the test queues more: everything queued
meanwhile must join the next transaction together. The writes here use a table of
their own (`Items`, handed to the committer as its Tx); which transaction each
ran in is read off the statements the connection executed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

from tako._errors import NotAllowed, StorageError, TakoError
from tako.takod.storage.interface import QueuedWrite, Tx
from tako.takod.storage.sqlite.committer import Committer


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


class Items:
    """The committer's Tx here: writes on the `item` table. Each notes the transaction it
    ran in (`ran`); `statements` is what the writer connection executed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[str] = []
        self.batches = 0  # transactions begun
        self.ran: dict[str, int] = {}  # write -> the transaction it ran in
        conn.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        self.statements.append(sql)
        if sql.startswith("BEGIN"):
            self.batches += 1

    def insert(self, name: str, parent: int | None = None) -> str:
        self.ran[name] = self.batches
        self.conn.execute("INSERT INTO item (name, parent) VALUES (?, ?)", (name, parent))
        return name

    def insert_then_refuse(self, name: str) -> None:
        self.insert(name)
        raise NotAllowed(f"{name} is refused")

    def insert_then_crash(self, name: str) -> None:
        self.insert(name)
        raise ValueError(f"{name} has a bug")


@asynccontextmanager
async def committer(db: Path) -> AsyncIterator[tuple[Committer, Items, sqlite3.Connection]]:
    """A running committer on `db`, its writes, and a separate connection that sees only
    commits."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    reader = sqlite3.connect(db, isolation_level=None)
    items = Items(conn)
    c = Committer(conn, cast(Tx, items))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.run)
            yield c, items, reader
            nursery.cancel_scope.cancel()
    finally:
        reader.close()
        conn.close()


class Gate:
    """A write that holds the writer thread (inside its transaction) until opened."""

    def __init__(self, items: Items) -> None:
        self.items = items
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, tx: Tx) -> str:
        self.items.ran["gate"] = self.items.batches
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"
        return "gate"

    async def wait_entered(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.wait, 30)


def names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM item ORDER BY name")]


def ignore(_: QueuedWrite[Any]) -> None:
    pass


async def test_writes_queued_during_a_commit_join_the_next_transaction(db: Path) -> None:
    async with committer(db) as (c, items, reader):
        gate = Gate(items)
        answered: list[str] = []

        def record(item: QueuedWrite[Any]) -> None:
            answered.append(str(item.result))

        c.submit(gate, record)
        await gate.wait_entered()
        for name in ("a", "b", "c"):
            c.submit(lambda _, name=name: items.insert(name), record)  # type: ignore[misc]
        gate.open.set()
        assert await c.write(lambda _: items.insert("d")) == "d"  # queued after all of them
        assert names(reader) == ["a", "b", "c", "d"]
    assert answered == ["gate", "a", "b", "c"]
    assert {k: v for k, v in items.ran.items() if k != "d"} == {"gate": 1, "a": 2, "b": 2, "c": 2}
    assert items.ran["d"] in (2, 3)
    assert len(items.ran) == 5


async def test_a_failing_write_is_rolled_back_alone(db: Path) -> None:
    async with committer(db) as (c, items, reader):
        gate = Gate(items)
        done: list[QueuedWrite[Any]] = []
        c.submit(gate, done.append)
        await gate.wait_entered()
        c.submit(lambda _: items.insert("a"), done.append)
        c.submit(lambda _: items.insert_then_refuse("b"), done.append)
        c.submit(lambda _: items.insert_then_crash("c"), done.append)
        c.submit(lambda _: items.insert("d"), done.append)
        gate.open.set()
        await c.write(lambda _: items.insert("e"))
        assert names(reader) == ["a", "d", "e"]  # b's and c's rows went with their errors
    assert [(i.result, type(i.error)) for i in done] == [
        ("gate", type(None)),
        ("a", type(None)),
        (None, NotAllowed),
        (None, TakoError),
        ("d", type(None)),
    ]
    assert "ValueError: c has a bug" in str(done[3].error)  # a bug says what it was
    assert {items.ran[n] for n in "abcd"} == {2}  # one transaction, four savepoints
    assert items.batches in (2, 3)  # "e" may have caught the batch of the others


async def test_an_atomic_write_is_spared_its_savepoint(db: Path) -> None:
    async with committer(db) as (c, items, reader):
        gate = Gate(items)
        c.submit(gate, ignore)
        await gate.wait_entered()
        first = len(items.statements)
        c.submit(lambda _: items.insert("atomic"), ignore, atomic=True)
        c.submit(lambda _: items.insert("guarded"), ignore)
        gate.open.set()
        await c.write(lambda _: None)
        assert names(reader) == ["atomic", "guarded"]
    batch = items.statements[first:]
    inserts = [s for s in batch if s.startswith("INSERT")]
    assert len(inserts) == 2
    atomic, guarded = (batch.index(s) for s in inserts)
    assert batch[atomic - 1] == "BEGIN IMMEDIATE"  # the next batch, no savepoint first
    assert batch[guarded - 1] == "SAVEPOINT op"


async def test_a_batch_that_cannot_commit_fails_each_caller(db: Path) -> None:
    """COMMIT itself fails (here a deferred foreign key; in production a full disk):
    nothing of the batch is written, and every caller raises, none hears success."""
    async with committer(db) as (c, items, reader):
        gate = Gate(items)
        results: dict[str, Any] = {}

        async def write(name: str, parent: int | None) -> None:
            try:
                results[name] = await c.write(lambda _: items.insert(name, parent))
            except StorageError as exc:
                results[name] = exc

        c.submit(gate, ignore)
        await gate.wait_entered()
        async with trio.open_nursery() as nursery:
            for name, parent in (("a", None), ("orphan", 404), ("b", None)):
                nursery.start_soon(write, name, parent)
            await trio.testing.wait_all_tasks_blocked()  # all three are queued
            gate.open.set()
        assert names(reader) == []
        assert await c.write(lambda _: items.insert("after")) == "after"  # the next is fine
        assert names(reader) == ["after"]
    assert set(results) == {"a", "orphan", "b"}
    for name, outcome in results.items():
        assert isinstance(outcome, StorageError), (name, outcome)
        assert "FOREIGN KEY" in str(outcome)


async def test_callers_are_answered_after_the_commit_in_the_order_they_wrote(db: Path) -> None:
    async with committer(db) as (c, items, reader):
        gate = Gate(items)
        answered: list[tuple[str, list[str]]] = []

        def on_done(item: QueuedWrite[Any]) -> None:
            # what a separate connection sees now: only committed rows
            answered.append((str(item.result), names(reader)))

        c.submit(gate, on_done)
        await gate.wait_entered()
        order = ["m", "c", "x", "a", "q"]
        for name in order:
            c.submit(lambda _, name=name: items.insert(name), on_done)  # type: ignore[misc]
        gate.open.set()
        await c.write(lambda _: None)
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
        async with committer(db) as (c, items, _):
            gate = Gate(items)
            c.submit(gate, ignore)
            await gate.wait_entered()
            written = [
                c.submit(
                    lambda _, name=name: items.insert(name),  # type: ignore[misc]
                    ignore,
                    early=lambda item: (sink, f"{item.result};".encode()),
                )
                for name in ("a", "b")
            ]
            refused = c.submit(
                lambda _: items.insert_then_refuse("c"), ignore, early=lambda _: (sink, b"!")
            )
            gate.open.set()
            await c.write(lambda _: None)
    finally:
        db_reader.close()
    assert sink.writes == [(b"a;b;", ["a", "b"])]  # one write, after the commit
    assert [i.answered for i in written] == [True, True]
    assert not refused.answered  # a failed write is answered in trio, with its error


async def test_stopping_commits_what_was_queued_then_refuses_writes(db: Path) -> None:
    """Cancelled, the committer still commits and answers every write already queued;
    after that, a write is refused at once and nothing is written."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    reader = sqlite3.connect(db, isolation_level=None)
    items = Items(conn)
    c = Committer(conn, cast(Tx, items))
    answered: list[QueuedWrite[Any]] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.run)
            gate = Gate(items)
            c.submit(gate, answered.append)
            await gate.wait_entered()
            for name in ("a", "b"):
                c.submit(lambda _, name=name: items.insert(name), answered.append)  # type: ignore[misc]
            nursery.cancel_scope.cancel()  # takod is stopping
            gate.open.set()
        assert [(i.result, i.error) for i in answered] == [("gate", None), ("a", None), ("b", None)]
        assert names(reader) == ["a", "b"]
        with pytest.raises(StorageError, match="stopping; nothing was written"):
            await c.write(lambda _: items.insert("late"))
        late = c.submit(lambda _: items.insert("late"), answered.append)
        assert answered[-1] is late
        assert isinstance(late.error, StorageError)
        assert names(reader) == ["a", "b"]
        assert "late" not in items.ran
    finally:
        reader.close()
        conn.close()


class LosingRaces(Committer):
    """A writer whose database reports lost races for rows (PostgreSQL's deadlocks) as
    OperationalError("lost a race ..."): what a backend's `conflict` says it is."""

    def conflict(self, exc: BaseException) -> bool:
        return "lost a race" in str(exc)


async def test_a_write_that_loses_a_race_for_its_rows_is_tried_again_from_scratch(
    db: Path,
) -> None:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    reader = sqlite3.connect(db, isolation_level=None)
    items = Items(conn)
    c = LosingRaces(conn, cast(Tx, items))
    tries: list[int] = []

    def racing(name: str, losses: int) -> str:
        tries.append(1)
        items.insert(f"{name}{len(tries)}")  # a row each attempt: only the last may stay
        if len(tries) <= losses:
            raise sqlite3.OperationalError("lost a race for its rows")
        return name

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.run)
            assert await c.write(lambda _: racing("a", losses=2)) == "a"
            assert len(tries) == 3 and names(reader) == ["a3"]  # the two lost attempts undone
            tries.clear()
            with pytest.raises(StorageError, match="lost a race"):  # it gives up, in the end
                await c.write(lambda _: racing("b", losses=99))
            assert len(tries) == 5 and names(reader) == ["a3"]
            nursery.cancel_scope.cancel()
    finally:
        reader.close()
        conn.close()
