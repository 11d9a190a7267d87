"""schema.sql and the numbered migrations describe the same database."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from takod.store import APPLICATION_ID, Store, migrations

PACKAGE = resources.files("takod")
MIGRATION_FILES = sorted(
    (p for p in (PACKAGE / "migrations").iterdir() if p.name.endswith(".sql")),
    key=lambda p: p.name,
)


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name"
    ).fetchall()
    return [(t, n, tbl, None if sql is None else " ".join(sql.split())) for t, n, tbl, sql in rows]


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


def test_migrations_produce_schema_sql(tmp_path: Path) -> None:
    from_schema = build(tmp_path, "schema.db", [(PACKAGE / "schema.sql").read_text()])
    from_migrations = build(tmp_path, "migrated.db", [p.read_text() for p in MIGRATION_FILES])
    assert from_migrations == from_schema
    names = {name for kind, name, _, _ in from_schema if kind == "table"}
    assert {"runs", "steps", "waiters", "signals"} <= names


def test_the_store_builds_the_same_schema(tmp_path: Path) -> None:
    from_schema = build(tmp_path, "schema.db", [(PACKAGE / "schema.sql").read_text()])
    Store(tmp_path / "store.db").close()
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        assert schema_of(conn) == from_schema
    finally:
        conn.close()


def test_a_new_store_reaches_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "apps" / "shop" / "runs.db"
    Store(path).close()
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
    Store(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATION_FILES)
        expected = build(tmp_path, "schema.db", [(PACKAGE / "schema.sql").read_text()])
        assert schema_of(conn) == expected
    finally:
        conn.close()
