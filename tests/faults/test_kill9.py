"""Real kill -9 at random moments: nothing lost, no acknowledged step ever runs again.

Every step body appends `exec:<run>:<key>` to a log before it works; the handler
appends `ack:<run>:<key>:<value>` once the checkpoint is acknowledged. After
each trial the log must show: every run completed; each step's stored result
is the value first acknowledged; no step executed after its acknowledgement;
and only a step in flight at a kill executed twice.
"""

from __future__ import annotations

import os
import random
import signal
from collections import defaultdict

import pytest
import trio

from tests.conftest import App, TakodProcess, eventually, running
from tests.procs import worker_pids

pytestmark = pytest.mark.slow

FIVE_STEPS = """
    import os, random, time
    from tako import workflow

    def effect(line):
        with open(EFFECTS, "a") as f:
            f.write(line + "\\n")

    def body(run, key):
        effect(f"exec:{run}:{key}")
        time.sleep(random.uniform(0, 0.02))
        return f"{run}:{key}:{os.getpid()}:{random.random()}"

    @workflow
    async def five(payload, step):
        for i in range(5):
            value = await step.run(f"s{i}", lambda i=i: body(step.run_id, f"s{i}"))
            effect(f"ack:{step.run_id}:s{i}:{value}")
        return "done"
"""
RUNS = 20


def check_log(lines: list[str], stored: dict[str, dict[str, str]], kills: int) -> None:
    """The delivery guarantees (docs/concepts.md), read off the side-effect log."""
    execs: dict[tuple[str, str], list[int]] = defaultdict(list)
    acks: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for n, line in enumerate(lines):
        kind, run, key, *rest = line.split(":", 3)
        if kind == "exec":
            execs[(run, key)].append(n)
        else:
            acks[(run, key)].append((n, rest[0]))
    for run, steps in stored.items():
        twice = 0
        for key, value in steps.items():
            ran, acked = execs[(run, key)], acks[(run, key)]
            assert ran, f"{run} {key} has a result but never ran"
            assert acked, f"{run} {key} was never acknowledged to its handler"
            first_ack, first_value = acked[0]
            assert value == first_value, f"{run} {key}: stored result is not the first acked"
            assert all(v == first_value for _, v in acked), f"{run} {key}: replay changed value"
            assert all(n < first_ack for n in ran), f"{run} {key} ran again after its ack"
            twice += len(ran) > 1
        assert twice <= kills, f"{run}: {twice} steps ran twice with {kills} kill(s)"


async def stored_results(app: App, run_ids: list[str]) -> dict[str, dict[str, str]]:
    client = app.client()
    out = {}
    for rid in run_ids:
        run = await client.get_run(rid)
        assert run.status == "completed", (rid, run.status, run.error)
        out[rid] = {s.key: s.result for s in run.steps or []}
        assert sorted(out[rid]) == [f"s{i}" for i in range(5)]
    return out


@pytest.fixture
def runtime() -> str:
    return "asyncio"


async def test_worker_killed_mid_step_thirty_times(app: App) -> None:
    app.write("five.py", FIVE_STEPS)
    rng = random.Random(20261121)
    async with running(app):
        client = app.client()
        for trial in range(30):
            app.log.unlink(missing_ok=True)
            run_ids = [await client.start("five", trial) for _ in range(RUNS)]
            await eventually(lambda: worker_pids(app.dir), what="a worker")
            await trio.sleep(rng.uniform(0, 0.15))
            for pid in worker_pids(app.dir):
                os.kill(pid, signal.SIGKILL)
            for rid in run_ids:
                assert await client.result(rid, timeout=30) == "done"
            check_log(app.effects(), await stored_results(app, run_ids), kills=1)
            for rid in run_ids:
                assert (await client.get_run(rid)).attempts == 1  # nobody is charged


@pytest.mark.parametrize("also_workers", [False, True], ids=["takod", "takod-and-workers"])
async def test_supervisor_killed_and_restarted(app: App, also_workers: bool) -> None:
    app.write("five.py", FIVE_STEPS)
    rng = random.Random(7 + also_workers)
    takod = TakodProcess(app)
    try:
        for trial in range(5):
            app.log.unlink(missing_ok=True)
            await takod.start()
            client = app.client()
            run_ids = [await client.start("five", trial) for _ in range(RUNS)]
            await trio.sleep(rng.uniform(0.05, 0.3))
            workers = worker_pids(app.dir)
            takod.kill(signal.SIGKILL)
            if also_workers:
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
            await takod.wait()
            await eventually(lambda: not worker_pids(app.dir), what="orphaned workers to exit")
            await takod.start()  # same data dir: the stale socket is replaced
            for rid in run_ids:
                assert await client.result(rid, timeout=30) == "done"
            check_log(app.effects(), await stored_results(app, run_ids), kills=1)
            takod.kill(signal.SIGTERM)
            assert await takod.wait() == 0
    finally:
        takod.stop()
