"""What the database did while a PostgreSQL workload ran: commits, CPU, busy backends.

A `Sampler` wraps one measurement. It reads `pg_stat_database.xact_commit` of the
bench's database before and after (commits/s), the CPU time of the server's
processes (every pid `pg_stat_activity` lists, read from /proc), of the engine's
processes and of the whole machine (/proc/stat), and samples `pg_stat_activity`
every 20 ms on a connection of its own (how many backends were running a
statement, and what the busy ones waited on). Where `pg_stat_statements` is
loaded (a throwaway cluster with `shared_preload_libraries`), it also counts the
statements the workload sent: round trips per step.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0 when it is gone)."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    """Direct children of a process (takod's workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = (Path("/proc") / entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid:
            out.append(int(entry))
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


class Sampler:
    """Use as a context manager around one workload; `figures()` afterwards."""

    def __init__(self, url: str, dbname: str, engine_pids: list[int]) -> None:
        self.url = url
        self.dbname = dbname
        self.engine_pids = engine_pids
        self.conn = psycopg.connect(url, autocommit=True)
        self.statements = self._has_statements()
        self._stop = threading.Event()
        self._active: list[int] = []
        self._waits: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.out: dict[str, float] = {}
        self.top: list[tuple[str, int, float]] = []

    def _has_statements(self) -> bool:
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.conn.execute("SELECT pg_stat_statements_reset()")
            return True
        except psycopg.Error:
            return False

    def _commits(self) -> int:
        row = self.conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.dbname,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _server_pids(self) -> list[int]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity").fetchall()
        return [int(r[0]) for r in rows]

    def _engine_cpu(self) -> float:
        pids = set(self.engine_pids)
        for pid in self.engine_pids:
            pids.update(children(pid))
        return sum(cpu_seconds(p) for p in pids)

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                    "FROM pg_stat_activity WHERE state = 'active' AND datname = %s "
                    "AND pid <> pg_backend_pid()",
                    (self.dbname,),
                ).fetchall()
                self._active.append(len(rows))
                self._waits.update(r[0] for r in rows)

    def __enter__(self) -> Sampler:
        self._pids0 = self._server_pids()
        self._pg0 = {p: cpu_seconds(p) for p in self._pids0}
        self._eng0 = self._engine_cpu()
        self._me0 = sum(os.times()[:2])
        self._busy0 = machine_busy()
        self._commits0 = self._commits()
        if self.statements:
            self.conn.execute("SELECT pg_stat_statements_reset()")
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        commits = self._commits() - self._commits0
        busy1 = machine_busy()
        pids = set(self._pids0) | set(self._server_pids())
        pg = sum(cpu_seconds(p) - self._pg0.get(p, 0.0) for p in pids)
        engine = self._engine_cpu() - self._eng0
        me = sum(os.times()[:2]) - self._me0
        self.out = {
            "wall_s": wall,
            "commits": commits,
            "commits_per_s": commits / wall,
            "pg_cpu_pct": 100 * pg / wall,
            "engine_cpu_pct": 100 * engine / wall,
            "client_cpu_pct": 100 * me / wall,
            "machine_busy_pct": 100 * (busy1[0] - self._busy0[0]) / (busy1[1] - self._busy0[1]),
            "active_backends": sum(self._active) / max(1, len(self._active)),
        }
        total = sum(self._waits.values()) or 1
        for wait, n in self._waits.most_common(4):
            self.out[f"wait {wait} %"] = 100 * n / total
        if self.statements:
            rows = self.conn.execute(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s) "
                "ORDER BY calls DESC",
                (self.dbname,),
            ).fetchall()
            self.out["statements"] = float(sum(r[1] for r in rows))
            self.top = [(str(r[0]), int(r[1]), float(r[2])) for r in rows[:12]]
        self.conn.close()


def raw_commits(url: str, seconds: float) -> float:
    """The floor of one checkpoint on this server: single-row INSERT + COMMIT in a loop
    on one connection (synchronous_commit as the server has it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_commits")
        conn.execute("CREATE TABLE raw_commits (k BIGINT PRIMARY KEY, v BYTEA)")
        n, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            conn.execute("INSERT INTO raw_commits VALUES (%s, %s)", (n, b"42"))
            n += 1
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE raw_commits")
    return n / elapsed
