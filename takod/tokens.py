"""API tokens: named credentials with scopes, kept in the app's runs.db.

A token is shown once, when it is created; only its SHA-256 is stored, so a
copy of the database lets nobody call the API. Every check reads the table,
so a new or revoked token takes effect at once. Writes run inside the
committer's transaction like the store's; reads take the read-only connection.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from typing import Any, NamedTuple

from tako._errors import NotAllowed, TakoError, Unauthorized

PREFIX = "tako_"  # recognisable in a config file or a leak scanner


class TokenNotFound(TakoError):
    """No token with that name exists."""

    code = "not_found"


class Identity(NamedTuple):
    name: str
    scopes: list[str]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: sqlite3.Connection, name: str, scopes: list[str], now: int) -> str:
    """Store a new token named `name`; returns the token itself (the only time it exists)."""
    if conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
        raise NotAllowed(
            f"a token named {name!r} already exists; revoke it first (`tako tokens revoke {name}`)"
        )
    token = PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO tokens (name, hash, scopes, created_at) VALUES (?, ?, ?, ?)",
        (name, hash_token(token), json.dumps(list(dict.fromkeys(scopes))), now),
    )
    return token


def revoke(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 0:
        raise TokenNotFound(f"no token named {name!r} (see `tako tokens list`)")


def read_tokens(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every token's name, scopes and creation time (ms), by name; never the hash."""
    rows = conn.execute("SELECT name, scopes, created_at FROM tokens ORDER BY name").fetchall()
    return [{"name": n, "scopes": json.loads(s), "created_at": at} for n, s, at in rows]


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])


def identify(conn: sqlite3.Connection, token: str) -> Identity:
    """Who `token` is; Unauthorized when it matches none. Looked up by its hash, so the
    comparison never touches the token's own bytes."""
    row = conn.execute(
        "SELECT name, scopes FROM tokens WHERE hash = ?", (hash_token(token),)
    ).fetchone()
    if row is None:
        raise Unauthorized("this token is not valid (unknown or revoked)")
    return Identity(str(row[0]), json.loads(row[1]))
