"""Where runs live: the storage seam (interface.py) and its backends (sqlite/).

takod and the CLI reach storage only through `open_backend` and `open_reads`
and the verbs of `takod.storage.interface`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from takod.storage.interface import ApprovalEvents, Backend, Reads, StoreError, Tx

__all__ = ["ApprovalEvents", "Backend", "Reads", "StoreError", "Tx", "open_backend", "open_reads"]


def open_backend(
    path: Path, *, durability: str = "full", events: ApprovalEvents | None = None
) -> Backend:
    """The app's store: today a SQLite file at `path`."""
    from takod.storage.sqlite import SqliteBackend

    return SqliteBackend(path, durability=durability, events=events)


@contextmanager
def open_reads(path: Path) -> Iterator[Reads]:
    """Read views on the app's store without a supervisor (the CLI while it is down)."""
    from takod.storage.sqlite import open_reads as sqlite_reads

    with sqlite_reads(path) as reads:
        yield reads
