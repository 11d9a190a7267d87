"""Where runs live: the storage seam (interface.py) and its backends (sqlite/).

takod and the CLI reach storage only through `open_backend` and `open_reads`
and the verbs of `takod.storage.interface`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tako.takod.storage.interface import ApprovalEvents, Backend, Reads, StoreError, Tx

__all__ = [
    "ApprovalEvents",
    "Backend",
    "Reads",
    "StoreError",
    "Tx",
    "open_backend",
    "open_reads",
    "redact",
]


def redact(url: str) -> str:
    """A database URL fit to print: without its password."""
    from tako.takod.storage.postgres.schema import redact as without_password

    return without_password(url)


def open_backend(
    path: Path,
    *,
    durability: str = "full",
    events: ApprovalEvents | None = None,
    url: str | None = None,
    app: str = "",
) -> Backend:
    """The app's store: the PostgreSQL schema of `app` at `url`, else runs.db at `path`."""
    if url is not None:
        from tako.takod.storage.postgres import PostgresBackend

        return PostgresBackend(url, app, events=events)
    from tako.takod.storage.sqlite import SqliteBackend

    return SqliteBackend(path, durability=durability, events=events)


@contextmanager
def open_reads(where: Path | str, app: str = "") -> Iterator[Reads]:
    """Read views on the app's store without a supervisor (the CLI while it is down):
    runs.db at a path, or the app's schema at a postgresql:// URL."""
    if isinstance(where, str):
        from tako.takod.storage.postgres import open_reads as postgres_reads

        with postgres_reads(where, app) as reads:
            yield reads
        return
    from tako.takod.storage.sqlite import open_reads as sqlite_reads

    with sqlite_reads(where) as reads:
        yield reads
