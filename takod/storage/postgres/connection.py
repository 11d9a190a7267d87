"""psycopg connections that speak the verbs' SQL: `?` placeholders, rows by name or index.

The verbs (takod/storage/sqlite/runs.py, approvals.py, reads.py) are written
once, in the SQL that SQLite and PostgreSQL share; this wrapper is what lets
them run unchanged on psycopg.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker

SCHEMA_NAME = re.compile(r"[^a-z0-9_]")


def schema_of(app: str) -> str:
    """The app's schema: `tako_<app>`, lower case, anything else made `_`."""
    return "tako_" + SCHEMA_NAME.sub("_", app.lower())


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (the verbs' SQL holds no literal `?` or `%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row(tuple[Any, ...]):
    """A row readable by column name (as sqlite3.Row) and by index."""

    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_index": {n: i for i, n in enumerate(names)}})


def rows_by_name(cursor: Any) -> RowMaker[Row]:
    cls = _row_class(tuple(c.name for c in cursor.description or ()))
    return cls


class PgConn:
    """What the verbs call `conn`: `execute(sql, params)` returning a cursor."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.raw.execute(translate(sql), params)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status == TransactionStatus.INTRANS

    def close(self) -> None:
        self.raw.close()


# A database that vanishes (a host cut off, a server gone without closing) must fail
# calls within seconds, not after the kernel's TCP timeout of minutes: a supervisor
# cut off answers `unavailable`, and its lease runs out as it should. The URL's own
# settings win.
FAIL_FAST = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def conninfo(url: str) -> str:
    """`url` with the fail-fast settings it does not set itself."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    return psycopg.conninfo.make_conninfo(
        url, **{k: v for k, v in FAIL_FAST.items() if k not in given}
    )


def connect(url: str, app: str, *, by_name: bool = False) -> PgConn:
    """A connection in autocommit mode (transactions are explicit), on the app's schema."""
    raw: psycopg.Connection[Any] = psycopg.connect(
        conninfo(url),
        autocommit=True,
        row_factory=rows_by_name if by_name else psycopg.rows.tuple_row,
    )
    raw.execute(f"SET search_path TO {schema_of(app)}")
    return PgConn(raw)
