"""`python -m bench [--quick]`: checkpoint throughput and resume latency against a baseline.

Every figure is reported with its ratio to a baseline measured in the same run
(raw `sqlite3` single-row commits in the same durability mode), because these
machines are noisy. Results go to bench/results/ as JSON and markdown.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import trio

import tako
import takod

APP = """
from tako import workflow

@workflow
async def steps(payload, step):
    await step.wait_for(payload["go"])  # all runs start stepping together
    for i in range(payload["steps"]):
        await step.run(f"s{i}", lambda i=i: i)
    return payload["steps"]

@workflow
async def resume(payload, step):
    return await step.wait_for(payload["event"])
"""


def sqlite_commits_per_second(seconds: float, durability: str) -> float:
    """The physical floor of a checkpoint: one row, one commit."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {durability.upper()}")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{n}", b"42"))
            conn.execute("COMMIT")
            n += 1
        conn.close()
        return n / (time.perf_counter() - start)


async def tako_scenarios(runs: int, steps: int, pings: int, durability: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tkb", dir="/tmp") as tmp:
        app = Path(tmp) / "app"
        (app / "workflows").mkdir(parents=True)
        (app / "workflows" / "bench.py").write_text(textwrap.dedent(APP))
        (app / "tako.toml").write_text(
            f'name = "bench"\n[workers]\nidle_timeout = "60s"\nconcurrency = {max(runs, 10)}\n'
            f'[storage]\ndurability = "{durability}"\n'
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: takod.serve(app, Path(tmp) / "d", task_status=task_status)
            )
            client = tako.Client(Path(tmp) / "d" / "tako.sock")
            out = await trio.to_thread.run_sync(_drive, client, runs, steps, pings)
            nursery.cancel_scope.cancel()
        return out


def _drive(client: tako.Client, runs: int, steps: int, pings: int) -> dict[str, float]:
    warm = client.start("steps", {"steps": 1, "go": "warm"})  # a warm worker
    client.signal("warm")
    client.result(warm, timeout=60)
    ids = [client.start("steps", {"steps": steps, "go": "go"}) for _ in range(runs)]
    while client.status()["runs"].get("waiting", 0) < runs:
        time.sleep(0.01)
    start = time.perf_counter()
    client.signal("go")  # wakes every run at once: what follows is checkpoints only
    for rid in ids:
        client.result(rid, timeout=600)
    elapsed = time.perf_counter() - start
    latencies = []
    for n in range(pings):
        rid = client.start("resume", {"event": f"e{n}"})
        while client.get_run(rid).status != "waiting":
            time.sleep(0.001)
        t0 = time.perf_counter()
        client.signal(f"e{n}", n)
        client.result(rid, timeout=60)
        latencies.append(time.perf_counter() - t0)
    return {
        "steps_per_second": runs * steps / elapsed,
        "signal_to_result_ms": statistics.median(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a smoke run: checks the harness")
    parser.add_argument("--durability", choices=("full", "normal"), default="full")
    args = parser.parse_args()
    runs, steps, pings, rounds = (20, 5, 5, 1) if args.quick else (200, 10, 50, 3)
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        base = sqlite_commits_per_second(0.5 if args.quick else 2.0, args.durability)
        figures = trio.run(tako_scenarios, runs, steps, pings, args.durability)
        rows.append({"round": r + 1, "sqlite_commits_per_second": base, **figures})
    summary = {k: statistics.median(row[k] for row in rows) for k in rows[0] if k != "round"}
    ratio = summary["steps_per_second"] / summary["sqlite_commits_per_second"]
    lines = [
        "| figure | median | ratio to raw sqlite commits/s |",
        "|---|---|---|",
        f"| raw sqlite3 single-row commits/s ({args.durability}) | "
        f"{summary['sqlite_commits_per_second']:,.0f} | 1.00 |",
        f"| tako checkpoints/s ({runs} runs x {steps} steps) | "
        f"{summary['steps_per_second']:,.0f} | {ratio:.2f} |",
        f"| signal -> run finished, median ms | {summary['signal_to_result_ms']:.2f} | "
        f"{summary['signal_to_result_ms'] / (1000 / summary['sqlite_commits_per_second']):.1f}x "
        "one raw commit |",
    ]
    print("\n".join(lines))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(json.dumps({"rounds": rows, "median": summary}, indent=2))
    (results / "latest.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
