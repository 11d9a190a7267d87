"""Writing to a Store as the committer does, and the supervisor's schema check."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from takod import schema_check
from takod.store import Store

T = TypeVar("T")


def tx(store: Store, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one store write in its own transaction; a write that raises leaves nothing."""
    store.conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(*args, **kwargs)
    except BaseException:
        store.conn.execute("ROLLBACK")
        raise
    store.conn.execute("COMMIT")
    return result


def check(schema: str, payload: bytes) -> str | None:
    """The supervisor's schema check: a JSON Schema (text) against a payload (JSON bytes)."""
    return schema_check.check(json.loads(schema), msgspec.json.decode(payload))
