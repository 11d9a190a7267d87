"""Reaching the PostgreSQL the PostgreSQL tests run against.

`TAKO_TEST_DATABASE_URL` names it (default: the local server at 127.0.0.1:5432,
database `test`, trust authentication). Where it cannot be reached the tests
skip, saying how to point them at one; in CI (`CI` set) they fail instead, as
a PostgreSQL that should be there and is not is a broken run, not a reason to
test less.
"""

from __future__ import annotations

import functools
import os
import secrets

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@functools.cache
def _reachable(url: str) -> str | None:
    """None when a connection works, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


def database_url() -> str:
    """The test database's URL, or skip (fail in CI) when it cannot be reached."""
    url = os.environ.get("TAKO_TEST_DATABASE_URL", DEFAULT_URL)
    problem = _reachable(url)
    if problem is not None:
        message = (
            f"PostgreSQL at {url} cannot be reached ({problem}); point "
            "TAKO_TEST_DATABASE_URL at a PostgreSQL 14+ database to run these tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def fresh_app() -> str:
    """An app name nobody else uses: its schema is the test's alone."""
    return f"t{secrets.token_hex(6)}"


def drop_app(url: str, app: str) -> None:
    import psycopg

    from tako.takod.storage.postgres.connection import schema_of

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema_of(app)} CASCADE")
