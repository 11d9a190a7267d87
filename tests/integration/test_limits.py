"""`@workflow(concurrency=N)`: never more than N of its runs executing, the others
pending in start order, other workflows not held up; through a worker's kill -9, and
with three supervisors on one PostgreSQL database.

What ran when is read from takod's own records: each run's one step, with the
worker's start and end times. Intervals of a limit-1 workflow must not overlap."""

from __future__ import annotations

import itertools
import os
import signal
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from tako import AsyncClient, Run
from tako.takod import serve
from tests.conftest import BOTH_STORES, App, eventually, running
from tests.procs import worker_pids

FLOWS = """
    import time
    from tako import workflow

    def work(run_id):
        with open(EFFECTS, "a") as f:
            f.write(run_id + "\\n")
        time.sleep(0.02)
        return run_id

    @workflow("one-at-a-time", concurrency=1)
    async def one_at_a_time(payload, step):
        return await step.run("work", lambda: work(step.run_id))

    @workflow("charge", key=lambda p: p["customer"], key_concurrency=1)
    async def charge(payload, step):
        return await step.run("work", lambda: work(step.run_id))

    @workflow("badkey", key=lambda p: p["nope"], key_concurrency=1)
    async def badkey(payload, step):
        return "never"

    @workflow("patient", concurrency=1)
    async def patient(payload, step):
        if payload == "waits":
            await step.wait_for("go")
        return await step.run("work", lambda: work(step.run_id))

    @workflow("free")
    async def free(payload, step):
        return await step.run("work", lambda: "free")
"""


def intervals(runs: list[Run]) -> list[tuple[float, float, str]]:
    spans = []
    for run in runs:
        (work,) = [s for s in run.steps or [] if s.key == "work"]
        assert work.started_at is not None and work.finished_at is not None
        spans.append((work.started_at.timestamp(), work.finished_at.timestamp(), run.run_id))
    return sorted(spans)


def assert_one_at_a_time(spans: list[tuple[float, float, str]]) -> None:
    for (_, end, before), (start, _, after) in itertools.pairwise(spans):
        assert start >= end, f"{after} started before {before} ended"


@BOTH_STORES
async def test_a_limit_of_one_holds_through_a_kill_and_keeps_start_order(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        ids = [await client.start("one-at-a-time", run_id=f"lim-{i:02d}") for i in range(50)]
        free = [await client.start("free") for _ in range(5)]
        for rid in free:  # not held up behind the limited backlog
            assert await client.result(rid, timeout=30) == "free"
        assert len(app.effects()) < 50

        await eventually(lambda: len(app.effects()) >= 10, what="ten limited runs")
        for pid in worker_pids(app.dir):
            os.kill(pid, signal.SIGKILL)
        for rid in ids:
            assert await client.result(rid, timeout=60) == rid
        runs = [await client.get_run(rid) for rid in ids]
    spans = intervals(runs)
    assert_one_at_a_time(spans)
    assert [rid for _, _, rid in spans] == ids  # in start order, the killed one included


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_a_limit_holds_across_three_supervisors(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        sockets = []
        for _n in range(3):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tkl")))
            await nursery.start(
                lambda task_status, d=data_dir: serve(app.dir, d, task_status=task_status)
            )
            sockets.append(data_dir / "tako.sock")
        clients = [AsyncClient(s) for s in sockets]
        ids = [
            await clients[i % 3].start("one-at-a-time", run_id=f"lim-{i:02d}") for i in range(30)
        ]
        for rid in ids:
            assert await clients[0].result(rid, timeout=60) == rid
        runs = [await clients[0].get_run(rid) for rid in ids]
        nursery.cancel_scope.cancel()
    assert_one_at_a_time(intervals(runs))


@BOTH_STORES
async def test_a_key_limit_holds_per_customer_and_a_bad_key_fails_the_run(app: App) -> None:
    app.write("flows.py", FLOWS)
    app.configure(workers={"concurrency": 8})
    async with running(app):
        client = app.client()
        ids = {
            customer: [
                await client.start("charge", {"customer": customer}, run_id=f"{customer}-{i}")
                for i in range(6)
            ]
            for customer in ("ann", "bo", "cy")
        }
        for rids in ids.values():
            for rid in rids:
                assert await client.result(rid, timeout=60) == rid
        by_customer = {
            customer: intervals([await client.get_run(rid) for rid in rids])
            for customer, rids in ids.items()
        }
        bad = await client.start("badkey", {"customer": "ann"})
        failed = await client.wait(bad, timeout=30)
    for spans in by_customer.values():
        assert_one_at_a_time(spans)
    assert failed.status == "failed" and failed.attempts == 1
    assert "the concurrency key of this run could not be computed: KeyError" in (failed.error or "")


@BOTH_STORES
async def test_a_waiting_run_holds_no_place(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        waiting = await client.start("patient", "waits")
        assert (await client.wait(waiting, parked=True, timeout=30)).status == "waiting"
        later = await client.start("patient", "goes")  # the only place is free meanwhile
        assert await client.result(later, timeout=30) == later
        await client.signal("go", run_id=waiting)
        assert await client.result(waiting, timeout=30) == waiting
