"""The physical floor of a checkpoint: raw `sqlite3`, one row, one commit, WAL."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path


def sqlite_commits_per_second(seconds: float, durability: str) -> float:
    """Single-row INSERT + COMMIT in a loop, WAL, synchronous FULL or NORMAL."""
    with tempfile.TemporaryDirectory(prefix="tkb", dir="/tmp") as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {durability.upper()}")
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?, ?)", (n, b"42"))
            conn.execute("COMMIT")
            n += 1
        elapsed = time.perf_counter() - start
        conn.close()
        return n / elapsed
