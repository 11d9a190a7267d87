"""What lets the SQL verbs run on SQLite and on PostgreSQL alike.

The verbs in runs.py, approvals.py and reads.py are written once, in the SQL
both databases speak (`?` placeholders, `ON CONFLICT` upserts, `RETURNING`).
Where the two differ, a `Dialect` says how: PostgreSQL takes row locks where
several supervisors may reach for the same row, SQLite has one writer and
needs none.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol


class Conn(Protocol):
    """A database connection as the verbs use it (sqlite3's, or a psycopg wrapper)."""

    def execute(self, sql: str, params: Any = (), /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...


class Dialect(NamedTuple):
    lock: str  # appended to a SELECT whose rows this transaction will change
    skip_locked: str  # appended to a SELECT of due work another supervisor may be taking
    # appended to a check whose rows must not change before this transaction commits
    # (a checkpoint's "is the run still held?"): under PostgreSQL's READ COMMITTED a
    # plain read sees the last committed row even while another transaction is taking
    # the run away, so the check would pass against a claim that is being revoked
    share: str
    # a statement taking a lock named by its one parameter until the transaction ends
    # (a workflow's concurrency limit); empty where one writer serialises everything
    workflow_lock: str = ""


SQLITE = Dialect(lock="", skip_locked="", share="")
POSTGRES = Dialect(
    lock=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    share=" FOR SHARE",
    workflow_lock="SELECT pg_advisory_xact_lock(hashtext(?))",
)
