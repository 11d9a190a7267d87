"""The same workloads on DBOS Transact (the `peers` extra), its system database on SQLite or,
given a `url`, on PostgreSQL (bench/postgres.py).

Run by bench as `python -m bench.peers_dbos SCENARIO JSON_ARGS` in a process of its
own (DBOS is a process-wide singleton); prints one JSON object of figures, keyed
like tako's. Imported only when `dbos` is installed.

DBOS runs in-process: its workflows, steps and the "client" share one
interpreter, with no socket in between. Its SQLite connections are set to WAL
and tako's synchronous level so both pay the same commit (DBOS's own default
is a rollback journal with synchronous FULL). On SQLite, DBOS delivers a
message to a waiting `recv` by polling, every second by default; bench polls
every 10 ms, its latency-friendly setting. On PostgreSQL, `recv` is woken by
LISTEN/NOTIFY (DBOS's default there) and nothing is tuned but the pool: as many
connections as DBOS's own default (20), which is more than 2 cores can keep busy.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import sqlalchemy  # type: ignore[import-not-found, unused-ignore]
from dbos import DBOS, DBOSClient, SendMessage  # type: ignore[import-not-found, unused-ignore]

GATE: asyncio.Event | None = None  # the shared "go" of scenarios 1 and 2 (not durable)


async def _nop() -> None:
    return None


async def _now() -> int:
    return time.time_ns()


nop = DBOS.step(name="nop")(_nop)
now = DBOS.step(name="now")(_now)


async def _steps(steps: int) -> list[int]:
    assert GATE is not None
    await GATE.wait()
    began = time.time_ns()
    for _ in range(steps):
        await nop()
    return [began, time.time_ns()]


async def _resume() -> int:
    await DBOS.recv_async("go", timeout_seconds=600)
    return int(await now())


async def _work(steps: int) -> int:
    for _ in range(steps):
        await nop()
    return time.time_ns()


def _checkout_sync(order: int) -> int:
    """Scenario 11, as a DBOS user writes it: recv, then 10 steps given as sync lambdas."""
    DBOS.recv("go", timeout_seconds=600)
    step = DBOS.run_step
    step({"name": "validate"}, lambda: {"order": order, "valid": True})
    price = step({"name": "price"}, lambda: 4200 + order % 7)
    step({"name": "reserve"}, lambda: {"sku": "A-1", "qty": 1})
    charge = step({"name": "charge"}, lambda: {"id": f"ch_{order}", "amount": price})
    step({"name": "invoice"}, lambda: f"inv_{charge['id']}")
    step({"name": "label"}, lambda: f"lbl_{order}")
    step({"name": "ship"}, lambda: {"carrier": "post", "order": order})
    step({"name": "email"}, lambda: True)
    step({"name": "points"}, lambda: price // 100)
    step({"name": "close"}, lambda: "done")
    return time.time_ns()


async def _checkout_async(order: int) -> int:
    """The same with async def step functions."""
    await DBOS.recv_async("go", timeout_seconds=600)

    async def validate() -> Any:
        return {"order": order, "valid": True}

    async def price() -> int:
        return 4200 + order % 7

    async def reserve() -> Any:
        return {"sku": "A-1", "qty": 1}

    async def charge() -> Any:
        return {"id": f"ch_{order}", "amount": total}

    async def invoice() -> str:
        return f"inv_{paid['id']}"

    async def label() -> str:
        return f"lbl_{order}"

    async def ship() -> Any:
        return {"carrier": "post", "order": order}

    async def email() -> bool:
        return True

    async def points() -> int:
        return int(total // 100)

    async def close() -> str:
        return "done"

    step = DBOS.run_step_async
    await step({"name": "validate"}, validate)
    total = await step({"name": "price"}, price)
    await step({"name": "reserve"}, reserve)
    paid = await step({"name": "charge"}, charge)
    await step({"name": "invoice"}, invoice)
    await step({"name": "label"}, label)
    await step({"name": "ship"}, ship)
    await step({"name": "email"}, email)
    await step({"name": "points"}, points)
    await step({"name": "close"}, close)
    return time.time_ns()


checkout_sync_wf = DBOS.workflow(name="checkout_sync")(_checkout_sync)
checkout_async_wf = DBOS.workflow(name="checkout_async")(_checkout_async)
steps_wf = DBOS.workflow(name="steps")(_steps)
work_wf = DBOS.workflow(name="work")(_work)
resume_wf = DBOS.workflow(name="resume")(_resume)


def _launch_postgres(url: str) -> str:
    DBOS(
        config={
            "name": "tkbench",
            "system_database_url": url,
            "log_level": "WARNING",
            "sys_db_pool_size": 20,
        }
    )
    DBOS.launch()
    return url


def _launch(durability: str, db: Path) -> str:
    def pragmas(conn: Any, _record: Any) -> None:
        if isinstance(conn, sqlite3.Connection):
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {durability.upper()}")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", pragmas)
    url = f"sqlite:///{db}"
    DBOS(
        config={
            "name": "tkbench",
            "system_database_url": url,
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.01,  # the default is 1 s
        }
    )
    DBOS.launch()
    return url


async def throughput(runs: int, steps: int) -> dict[str, float]:
    global GATE
    GATE = asyncio.Event()
    handles = [await DBOS.start_workflow_async(steps_wf, steps) for _ in range(runs)]
    await asyncio.sleep(0.5)  # every workflow is at the gate
    began = time.time_ns()
    GATE.set()
    ends = [(await h.get_result(polling_interval_sec=0.01))[1] for h in handles]
    return {"steps_per_s": runs * steps / ((max(ends) - began) / 1e9)}


def headline(runs: int, steps: int, variant: str) -> dict[str, float]:
    """Scenario 11: `runs` workflows in `recv("go")`; one `send_bulk` (one transaction, the
    nearest DBOS has to a broadcast signal) delivers "go" to all; from that call to the last
    workflow's end. Sync workflows run in DBOS's executor threads, async ones on the loop."""
    assert steps == 10  # the workflows above hold 10 steps
    if variant == "async":
        return asyncio.run(_headline_async(runs, steps))
    handles = [DBOS.start_workflow(checkout_sync_wf, i) for i in range(runs)]
    time.sleep(1.0 + runs / 1000)  # every workflow is inside recv
    began = time.time_ns()
    DBOS.send_bulk([SendMessage(h.get_workflow_id(), 1, "go") for h in handles])
    ends = [h.get_result(polling_interval_sec=0.01) for h in handles]
    return {"headline_sync_steps_per_s": runs * steps / ((max(ends) - began) / 1e9)}


async def _headline_async(runs: int, steps: int) -> dict[str, float]:
    handles = [await DBOS.start_workflow_async(checkout_async_wf, i) for i in range(runs)]
    await asyncio.sleep(1.0 + runs / 1000)  # every workflow is inside recv
    began = time.time_ns()
    await DBOS.send_bulk_async([SendMessage(h.get_workflow_id(), 1, "go") for h in handles])
    ends = [await h.get_result(polling_interval_sec=0.01) for h in handles]
    return {"headline_async_steps_per_s": runs * steps / ((max(ends) - began) / 1e9)}


async def started_and_done(runs: int, steps: int) -> dict[str, float]:
    """Start `runs` workflows of `steps` no-op steps each and wait for all of them:
    from the first start to the last workflow's end (tako's PostgreSQL workload)."""
    began = time.time_ns()
    handles = [await DBOS.start_workflow_async(work_wf, steps) for _ in range(runs)]
    ends = [await h.get_result(polling_interval_sec=0.01) for h in handles]
    seconds = (max(ends) - began) / 1e9
    return {"steps_per_s": runs * steps / seconds, "runs_per_s": runs / seconds}


async def sequential(steps: int, mode: str) -> dict[str, float]:
    global GATE
    GATE = asyncio.Event()
    handle = await DBOS.start_workflow_async(steps_wf, steps)
    GATE.set()
    began, ended = await handle.get_result(polling_interval_sec=0.01)
    return {f"ms_per_step_{mode}": (ended - began) / 1e6 / steps}


async def warm_resume(samples: int) -> dict[str, float]:
    warmup = 10
    handles = [await DBOS.start_workflow_async(resume_wf) for _ in range(samples + warmup)]
    await asyncio.sleep(1.0)  # every workflow is inside recv
    lat = []
    for h in handles:
        sent = time.time_ns()
        await DBOS.send_async(h.get_workflow_id(), 1, "go")
        lat.append((await h.get_result(polling_interval_sec=0.001) - sent) / 1e6)
    lat = sorted(lat[warmup:])
    return {
        "warm_resume_p50_ms": statistics.median(lat),
        "warm_resume_p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


def starts(url: str, n: int, threads: int = 4) -> dict[str, float]:
    """DBOSClient.enqueue (an external client starting a workflow) from `threads` threads,
    each delayed an hour as tako's are; each call is its own transaction."""
    clients = [DBOSClient(system_database_url=url) for _ in range(threads)]
    options: Any = {"queue_name": "bench", "workflow_name": "resume", "delay_seconds": 3600}

    def load(client: DBOSClient, k: int) -> None:
        for _ in range(k):
            client.enqueue(options)

    loads = [threading.Thread(target=load, args=(c, n // threads)) for c in clients]
    began = time.perf_counter()
    for t in loads:
        t.start()
    for t in loads:
        t.join()
    elapsed = time.perf_counter() - began
    for c in clients:
        c.destroy()
    return {"starts_per_s": (n // threads) * threads / elapsed}


def main(argv: list[str]) -> None:
    scenario, args = argv[0], json.loads(argv[1])
    with tempfile.TemporaryDirectory(prefix="tkb", dir="/tmp") as tmp:
        pg = args.pop("url", None)
        url = _launch_postgres(pg) if pg else _launch(args["mode"], Path(tmp) / "dbos.sqlite")
        if scenario != "sequential":
            args.pop("mode", None)
        handshake = args.pop("handshake", False)
        if handshake:  # bench/postgres.py samples from "ready" to its reply to the figures
            print("ready", flush=True)
            sys.stdin.readline()
        try:
            if scenario == "starts":
                out = starts(url, **args)
            elif scenario == "headline":
                out = headline(**args)
            else:
                work: dict[str, Callable[..., Coroutine[Any, Any, dict[str, float]]]] = {
                    "throughput": throughput,
                    "sequential": sequential,
                    "started_and_done": started_and_done,
                    "warm_resume": warm_resume,
                }
                out = asyncio.run(work[scenario](**args))
            if handshake:
                print(json.dumps(out), flush=True)
                sys.stdin.readline()
        finally:
            DBOS.destroy()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
