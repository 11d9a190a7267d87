"""Creating and upgrading an app's schema, safely when several supervisors start at once.

Each app lives in a schema of its own (`tako_<app>`), so several apps share a
database. Migrations are numbered files applied in order under an advisory
lock on the schema's name, each in a transaction that also records the new
version; a schema newer than this code is refused.
"""

from __future__ import annotations

from importlib import resources

import psycopg

from tako.takod.storage.interface import StoreError
from tako.takod.storage.postgres.connection import conninfo, schema_of


def migrations() -> list[str]:
    folder = resources.files(__package__) / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(folder / name).read_text() for name in names]


def migrate(url: str, app: str) -> tuple[int, int]:
    """Bring the app's schema up to date; returns (version before, version after)."""
    schema = schema_of(app)
    scripts = migrations()
    try:
        conn = psycopg.connect(conninfo(url), autocommit=True)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the database at {redact(url)}: {exc}") from None
    with conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (schema,))
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_version (version INTEGER NOT NULL)"
            )
            row = conn.execute(f"SELECT MAX(version) FROM {schema}.schema_version").fetchone()
            before = int(row[0]) if row and row[0] is not None else 0
            if before > len(scripts):
                raise StoreError(
                    f"the schema {schema} is at version {before}, newer than this tako"
                    f" understands ({len(scripts)}); upgrade tako on this host"
                )
            for number in range(before, len(scripts)):
                with conn.transaction():
                    conn.execute(f"SET LOCAL search_path TO {schema}")
                    conn.execute(scripts[number].encode())
                    conn.execute(f"INSERT INTO {schema}.schema_version VALUES (%s)", (number + 1,))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (schema,))
    return before, len(scripts)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable database URL)"
    host, db = info.get("host", "localhost"), info.get("dbname", "")
    user = info.get("user")
    at = f"{user}@" if user else ""
    return f"postgresql://{at}{host}:{info.get('port', 5432)}/{db}"
