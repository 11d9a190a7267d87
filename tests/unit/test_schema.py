"""The SQLite backend: schema.sql and the numbered migrations describe the same database."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
import trio

from tako.takod.storage.interface import Delivered
from tako.takod.storage.sqlite import SqliteBackend
from tako.takod.storage.sqlite.files import APPLICATION_ID, migrations, open_writer, schema_sql

PACKAGE = resources.files("tako.takod.storage.sqlite")
MIGRATION_FILES = sorted(
    (p for p in (PACKAGE / "migrations").iterdir() if p.name.endswith(".sql")),
    key=lambda p: p.name,
)


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name"
    ).fetchall()
    return [(t, n, tbl, None if sql is None else normal(sql)) for t, n, tbl, sql in rows]


def normal(sql: str) -> str:
    """SQL text compared as tokens: `ALTER TABLE ... ADD COLUMN` leaves `x ,y)` where
    schema.sql says `x, y )`; spacing around punctuation is no difference."""
    return re.sub(r"\s*([(),])\s*", r"\1", " ".join(sql.split()))


def build(tmp_path: Path, name: str, scripts: list[str]) -> list[tuple[str, str, str, str | None]]:
    conn = sqlite3.connect(tmp_path / name)
    try:
        for script in scripts:
            conn.executescript(script)
        return schema_of(conn)
    finally:
        conn.close()


def test_migrations_are_numbered_in_sequence() -> None:
    assert MIGRATION_FILES, "no migrations found"
    numbers = [int(re.match(r"(\d+)_", p.name).group(1)) for p in MIGRATION_FILES]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(numbers) + 1))
    assert [p.read_text() for p in MIGRATION_FILES] == migrations()
    assert (PACKAGE / "schema.sql").read_text() == schema_sql()


def test_migrations_produce_schema_sql(tmp_path: Path) -> None:
    from_schema = build(tmp_path, "schema.db", [(PACKAGE / "schema.sql").read_text()])
    from_migrations = build(tmp_path, "migrated.db", [p.read_text() for p in MIGRATION_FILES])
    assert from_migrations == from_schema
    names = {name for kind, name, _, _ in from_schema if kind == "table"}
    assert {"runs", "steps", "waits", "signals"} <= names


def test_the_store_builds_the_same_schema(tmp_path: Path) -> None:
    from_schema = build(tmp_path, "schema.db", [(PACKAGE / "schema.sql").read_text()])
    open_writer(tmp_path / "store.db", "full").close()
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        assert schema_of(conn) == from_schema
    finally:
        conn.close()


def test_a_new_store_reaches_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "apps" / "shop" / "runs.db"
    open_writer(path, "full").close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATION_FILES)
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()


@pytest.mark.parametrize("applied", range(len(MIGRATION_FILES)))
def test_the_store_upgrades_an_older_database(tmp_path: Path, applied: int) -> None:
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path)
    for p in MIGRATION_FILES[:applied]:
        conn.executescript(p.read_text())
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {applied}")
    conn.commit()
    conn.close()
    open_writer(path, "full").close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATION_FILES)
        expected = build(tmp_path, "schema.db", [(PACKAGE / "schema.sql").read_text()])
        assert schema_of(conn) == expected
    finally:
        conn.close()


async def test_runs_parked_before_0004_still_wake_after_it(tmp_path: Path) -> None:
    """0004 drops runs.crashes and waiters.timeout_at: a run parked on a signal by an
    older takod keeps waiting through the upgrade, and the signal still wakes it."""
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path)
    for p in MIGRATION_FILES[:3]:
        conn.executescript(p.read_text())
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO runs (id, workflow, status, payload, max_attempts, crashes, wake_at,"
        " waiting_for, claim_token, created_at, updated_at)"
        " VALUES ('r-1', 'wf', 'waiting', X'7B7D', 3, 1, 2000, 'go', 1, 1000, 1000)"
    )
    conn.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, started_at)"
        " VALUES ('r-1', 'go', 'go', 'wait', 'waiting', 0, 1000)"
    )
    conn.execute(
        "INSERT INTO waiters (run_id, event, step_key, timeout_at) VALUES ('r-1', 'go', 'go', 2000)"
    )
    conn.commit()
    conn.close()
    backend = SqliteBackend(path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.run)
            assert await backend.read(lambda r: r.next_wake()) == 2000
            delivered = await backend.write(
                lambda tx: tx.signal(
                    "go", b'"yes"', run_id=None, ttl_ms=1000, now=1500, check=lambda s, p: None
                )
            )
            assert delivered == Delivered(["r-1"], False)
            view = await backend.read(lambda r: r.run("r-1"))
            nursery.cancel_scope.cancel()
    finally:
        backend.close()
    assert (view.status, view.wake_at, view.waiting_for) == ("pending", None, None)
    assert [(s.key, s.status, bytes(s.result or b"")) for s in view.steps or []] == [
        ("go", "completed", b'"yes"')
    ]
