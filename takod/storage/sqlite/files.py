"""Opening runs.db: refuse a stranger's file, apply the numbered migrations, set WAL."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from tako.takod.storage.interface import StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
APPLICATION_ID = 0x74616B6F  # "tako": marks a file as ours, so we never write to a stranger's


def migrations() -> list[str]:
    """The numbered migration scripts, in order."""
    folder = resources.files(__package__) / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(folder / name).read_text() for name in names]


def schema_sql() -> str:
    """The whole schema in one script: what the migrations add up to (a test checks)."""
    return (resources.files(__package__) / "schema.sql").read_text()


def open_writer(path: Path, durability: str) -> sqlite3.Connection:
    """The one writing connection: migrated, WAL, `durability` "full" or "normal"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_foreign_file(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        _prepare(conn, durability)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"{path} is not a usable tako database ({exc}); it was left untouched. "
            "Move it away or point --data-dir elsewhere."
        ) from None
    return conn


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open runs.db for reading only (used while the supervisor is down, too)."""
    if not path.exists():
        raise StoreError(f"no database at {path}")
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    return conn


def _refuse_foreign_file(path: Path) -> None:
    """SQLite would happily turn a short non-database file into a database: refuse first."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a tako database (not even SQLite); it was left untouched. "
            "Move it away or point --data-dir elsewhere."
        )


def _prepare(conn: sqlite3.Connection, durability: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id != 0 or tables != 0):
        raise sqlite3.DatabaseError("it was not created by tako")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = OFF")
    scripts = migrations()
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(scripts):
        raise sqlite3.DatabaseError(
            f"its schema version {version} is newer than this tako understands ({len(scripts)})"
        )
    for number in range(version, len(scripts)):
        conn.execute("BEGIN IMMEDIATE")
        for statement in statements(scripts[number]):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {number + 1}")
        conn.execute("COMMIT")


def statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]
