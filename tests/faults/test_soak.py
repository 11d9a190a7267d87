"""Soak: 10,000 runs each waiting on its own event, signalled by 8 concurrent clients."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
import trio

import tako
from tests.conftest import App, TakodProcess, eventually

pytestmark = pytest.mark.slow
RUNS = 10_000
CLIENTS = 8


@pytest.fixture
def runtime() -> str:
    return "asyncio"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def drive(socket: Path, part: int, ids: list[str]) -> list[str]:
    """One client's share: start its runs, then (once all wait) signal each one."""
    with tako.Client(socket) as client:
        for n in range(part, RUNS, CLIENTS):
            ids.append(client.start("soak", n, run_id=f"soak-{n}"))
    return ids


def signal_all(socket: Path, part: int) -> int:
    delivered = 0
    with tako.Client(socket) as client:
        for n in range(part, RUNS, CLIENTS):
            delivered += client.signal(f"go-{n}", n).delivered
    return delivered


async def test_ten_thousand_parked_runs_signalled_by_eight_clients(app: App) -> None:
    app.configure(workers={"idle_timeout": "500ms", "concurrency": 500})
    app.write(
        "soak.py",
        """
        from tako import workflow

        @workflow
        async def soak(payload, step):
            got = await step.wait_for(f"go-{payload}")
            return await step.run("double", lambda: got * 2)
        """,
    )
    takod = TakodProcess(app)
    try:
        await takod.start()
        assert takod.proc is not None
        client = app.client()
        warm = await client.start("soak", -1)
        await eventually(lambda: _count(client, "waiting", 1))
        await client.signal("go--1", 1)
        await client.result(warm, timeout=30)
        before = rss_kib(takod.proc.pid)

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            starts = [pool.submit(drive, app.socket, part, []) for part in range(CLIENTS)]
            ids = await trio.to_thread.run_sync(lambda: [i for f in starts for i in f.result()])
            assert len(set(ids)) == RUNS
            await eventually(lambda: _count(client, "waiting", RUNS), timeout=90)
            signals = [pool.submit(signal_all, app.socket, part) for part in range(CLIENTS)]
            delivered = await trio.to_thread.run_sync(lambda: sum(f.result() for f in signals))
        assert delivered == RUNS
        await eventually(lambda: _count(client, "completed", RUNS + 1), timeout=90)
        sample = await client.get_run("soak-1234")
        assert sample.result == 2468
        await eventually(lambda: await_status(client), timeout=30, what="workers to leave")
        after = rss_kib(takod.proc.pid)
        print(f"takod RSS before {before} KiB, after {after} KiB")
        assert after <= before * 1.5, f"takod grew from {before} KiB to {after} KiB"
    finally:
        takod.stop()


async def _count(client: tako.AsyncClient, status: str, n: int) -> bool:
    return bool((await client.status())["runs"].get(status, 0) >= n)


async def await_status(client: tako.AsyncClient) -> bool:
    return bool((await client.status())["workers"] == 0)
