"""A cron schedule served by three supervisors on one PostgreSQL database: every tick
starts exactly one run, whichever supervisors reach it at once.

The three share one stopped clock (takod.scheduler.ManualClock); the test moves it
to each tick and wakes all three timers together, so they race for every tick."""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from tako import AsyncClient
from tako._cron import next_tick, tick_text
from tako.takod import Supervisor, serve
from tako.takod.scheduler import ManualClock
from tests.conftest import App, eventually

HOURLY = """
    from tako import workflow

    @workflow("hourly", schedule="0 * * * *", catch_up="all")
    async def hourly(payload, step):
        return await step.run("tick", lambda: step.run_id)
"""


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_three_supervisors_start_each_tick_once(app: App) -> None:
    app.write("hourly.py", HOURLY)
    clock = ManualClock(int(datetime(2026, 6, 1, 0, 30, tzinfo=UTC).timestamp() * 1000))
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        supervisors: list[Supervisor] = []
        for _ in range(3):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tks")))
            supervisors.append(
                await nursery.start(
                    lambda task_status, d=data_dir: serve(
                        app.dir, d, clock=clock, task_status=task_status
                    )
                )
            )
        client = AsyncClient(supervisors[0].socket_path)
        expected = []
        tick = clock.now_ms()
        for _ in range(5):
            tick = next_tick("0 * * * *", "UTC", tick)
            clock.at_ms = tick
            for supervisor in supervisors:  # all three at once
                supervisor.scheduler.note(tick, told=True)
            rid = f"hourly@{tick_text(tick)}"
            expected.append(rid)
            await eventually(lambda r=rid: _done(client, r), what=f"run {rid}")
        runs = await client.list_runs(workflow="hourly", limit=100)
        nursery.cancel_scope.cancel()
    assert sorted(r.run_id for r in runs) == expected
    assert all(r.status == "completed" and r.attempts == 1 for r in runs)


async def _done(client: AsyncClient, run_id: str) -> bool:
    runs = await client.list_runs(workflow="hourly", limit=100)
    return any(r.run_id == run_id and r.status == "completed" for r in runs)
