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


def checkpoint_ceiling(seconds: float, durability: str, batch: int = 1000) -> float:
    """What one writer thread can commit of tako's own checkpoints, and nothing else.

    The ceiling the engine's best tuning is held against: tako's schema and pragmas
    (takod's `open_writer`), its checkpoint statement and parameters, runs already
    claimed, and `batch` checkpoints per transaction on a writer thread of its own,
    as takod's group commit does; no sockets, no workers, no decoding. Returns
    checkpoints committed per second."""
    import threading

    from tako._protocol import StepDone
    from tako.takod.storage.interface import ApprovalEvents, NewRun
    from tako.takod.storage.sqlite.files import open_writer
    from tako.takod.storage.sqlite.runs import SqlTx
    from tako.takod.storage.sqlite.steps import SAVE_STEP_IF_HELD, save_step_params

    out: list[float] = []

    def writer(path: Path) -> None:
        conn = open_writer(path, durability)
        tx = SqlTx(conn, ApprovalEvents())
        now = int(time.time() * 1000)
        conn.execute("BEGIN")
        runs = [tx.create_run(NewRun("w", b"{}", 1, f"r{i}", None, None), now) for i in range(1000)]
        tokens = {a.run_id: a.token for a in tx.claim([c.run_id for c in runs], now)}
        conn.execute("COMMIT")
        template = [
            save_step_params(StepDone(id=0, run_id=rid, token=token, key="", name="s"), now)
            for rid, token in tokens.items()
        ]
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            rows = [  # a new key each: every checkpoint is an INSERT
                (*p[:1], f"s{i}", *p[2:8], i, *p[9:])
                for i, p in zip(range(n, n + batch), template, strict=False)
            ]
            conn.execute("BEGIN")
            conn.executemany(SAVE_STEP_IF_HELD, rows)
            conn.execute("COMMIT")
            n += batch
        out.append(n / (time.perf_counter() - start))
        conn.close()

    with tempfile.TemporaryDirectory(prefix="tkb", dir="/tmp") as tmp:
        thread = threading.Thread(target=writer, args=(Path(tmp) / "runs.db",))
        thread.start()
        thread.join()
    return out[0]
