"""Workers that die, freeze or get stopped: poison runs, fencing, graceful stop."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import tako
from tests.conftest import App, TakodProcess, clock_past, eventually, running, status_of
from tests.procs import worker_pids

pytestmark = pytest.mark.slow


@pytest.fixture
def runtime() -> str:
    return "asyncio"


POISON = """
    import os, signal
    from tako import workflow

    def hog():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # bounded: 1 GiB
        blocks = []
        while True:
            blocks.append(bytearray(64 << 20))

    @workflow(retries=1)
    async def exits(payload, step):
        await step.run("die", lambda: os._exit(1))

    @workflow(retries=1)
    async def sigkill(payload, step):
        await step.run("die", lambda: os.kill(os.getpid(), signal.SIGKILL))

    @workflow(retries=1)
    async def hog_memory(payload, step):
        await step.run("hog", hog)

    @workflow(retries=0)
    async def innocent(payload, step):
        await step.sleep("nap", "200ms")
        return await step.run("work", lambda: payload)
"""


@pytest.mark.parametrize(
    ("workflow", "error"),
    [
        ("exits", "worker crashed: exited with code 1"),
        ("sigkill", "worker crashed: killed by SIGKILL"),
        ("hog-memory", "worker crashed: out of memory"),
    ],
)
async def test_poison_runs_fail_and_fifty_innocents_complete_uncharged(
    app: App, workflow: str, error: str
) -> None:
    app.write("poison.py", POISON)
    async with running(app):
        client = app.client()
        innocents = [await client.start("innocent", n) for n in range(50)]
        poison = await client.start(workflow)
        with pytest.raises(tako.RunFailed, match=error):
            await client.result(poison, timeout=60)
        for n, rid in enumerate(innocents):
            assert await client.result(rid, timeout=60) == n
            assert (await client.get_run(rid)).attempts == 1
        assert (await client.get_run(poison)).attempts == 2  # its attempts, used up


async def test_a_frozen_worker_is_fenced_and_its_late_writes_refused(app: App) -> None:
    app.configure(workers={"lease": "1s"})
    app.write(
        "frozen.py",
        """
        import os, time
        from tako import workflow

        def work():
            with open(EFFECTS, "a") as f:
                f.write(f"start:{os.getpid()}\\n")
            while not os.path.exists(EFFECTS + ".second"):
                time.sleep(0.01)  # the first worker is frozen in here
            return os.getpid()

        @workflow
        async def fenced(payload, step):
            return await step.run("work", work)
        """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("fenced")
        await eventually(lambda: app.effects(), what="the step to start")
        (first,) = worker_pids(app.dir)
        os.kill(first, signal.SIGSTOP)
        try:
            (app.dir / "effects.log.second").write_text("")
            # past its lease, the run is given to a new worker, which finishes it
            second = await client.result(run_id, timeout=30)
            assert second != first
        finally:
            os.kill(first, signal.SIGCONT)
        # the first worker wakes, finishes its step, and its checkpoint is refused
        await eventually(lambda: first not in worker_pids(app.dir), what="the first to exit")
        run = await client.get_run(run_id)
    assert run.status == "completed" and run.result == second
    assert [(s.key, s.result) for s in run.steps or []] == [("work", second)]
    assert app.effects() == [f"start:{first}", f"start:{second}"]


async def test_a_frozen_supervisor_does_not_fence_workers_that_kept_beating(app: App) -> None:
    """takod stopped for longer than the lease (SIGSTOP, a long pause, swap): its workers'
    heartbeats wait unread in their sockets, so none is called silent on waking up, and
    no step body runs a second time beside the first."""
    app.configure(workers={"lease": "1s"})
    app.write(
        "held.py",
        """
        import os, time
        from tako import workflow

        def work():
            with open(EFFECTS, "a") as f:
                f.write(f"start:{os.getpid()}\\n")
            while not os.path.exists(EFFECTS + ".go"):  # held here until the test says go
                time.sleep(0.01)
            return os.getpid()

        @workflow
        async def held(payload, step):
            return await step.run("work", work)
        """,
    )
    takod = TakodProcess(app)
    try:
        await takod.start()
        client = app.client()
        run_id = await client.start("held")
        await eventually(lambda: app.effects(), what="the step to start")
        (worker,) = worker_pids(app.dir)
        takod.kill(signal.SIGSTOP)
        try:
            await trio.sleep(3.0)  # the stall itself (three leases), not a wait for anything
        finally:
            takod.kill(signal.SIGCONT)
        await client.status()  # awake again; a wrongly fenced run would now start anew
        (app.dir / "effects.log.go").write_text("")
        assert await client.result(run_id, timeout=30) == worker
        assert app.effects() == [f"start:{worker}"]
        assert (await client.get_run(run_id)).attempts == 1
    finally:
        takod.stop()


async def test_sigterm_lets_the_step_in_flight_finish_and_a_restart_resumes(app: App) -> None:
    app.write(
        "graceful.py",
        """
        import time
        from tako import workflow

        def effect(line):
            with open(EFFECTS, "a") as f:
                f.write(line + "\\n")

        def slow():
            effect("slow:start")
            time.sleep(1.0)
            effect("slow:end")
            return "slow done"

        @workflow
        async def graceful(payload, step):
            await step.run("slow", slow)
            await step.run("next", lambda: effect("next"))
            return "done"
        """,
    )
    takod = TakodProcess(app)
    try:
        await takod.start()
        client = app.client()
        run_id = await client.start("graceful")
        await eventually(lambda: "slow:start" in app.effects(), what="the slow step")
        takod.kill(signal.SIGTERM)
        assert await takod.wait() == 0
        assert not worker_pids(app.dir)
        assert app.effects() == ["slow:start", "slow:end"]  # finished within the grace...
        await takod.start()
        assert await client.result(run_id, timeout=30) == "done"
        # ...and was checkpointed: the restart went on from the next step
        assert app.effects() == ["slow:start", "slow:end", "next"]
    finally:
        takod.stop()


async def test_runs_of_a_broken_workflow_wait_and_resume_once_it_is_fixed(app: App) -> None:
    good = """
        from tako import workflow

        @workflow
        async def report(payload, step):
            return await step.run("render", lambda: f"report {payload}")
    """
    app.write("report.py", good)
    async with running(app) as supervisor:
        client = app.client()
        # due only after the reload below, even on a slow machine
        parked = await client.start("report", 1, delay="2s")
        app.write("report.py", "from tako import workflow\nraise RuntimeError('typo')\n")
        await supervisor.reload()
        assert (await client.get_run(parked)).status == "pending", "due before the reload"
        held = await eventually(lambda: _error_of(client, parked), what="the reason to show")
        assert "report.py:2" in held and "typo" in held and "resumes once the file is fixed" in held
        assert (await client.get_run(parked)).status == "pending"
        with pytest.raises(tako.UnknownWorkflow):
            await client.start("report", 2)
        app.write("report.py", good)
        await supervisor.reload()
        assert await client.result(parked, timeout=15) == "report 1"
        assert (await client.get_run(parked)).error is None


async def _error_of(client: tako.AsyncClient, run_id: str) -> str | None:
    return (await client.get_run(run_id)).error


async def test_prune_deletes_finished_runs_past_retention(app: App) -> None:
    app.write(
        "quick.py",
        """
        from tako import workflow

        @workflow
        async def quick(payload, step):
            await step.run("one", lambda: 1)
            return payload

        @workflow
        async def parked(payload, step):
            return await step.wait_for("never")
        """,
    )
    async with running(app):
        client = app.client()
        done = [await client.start("quick", n) for n in range(3)]
        for rid in done:
            await client.result(rid, timeout=15)
        waiting = await client.start("parked")
        await eventually(lambda: status_of(client, waiting, "waiting"))
        assert await client.prune(older_than="1h") == 0  # all too recent
        await clock_past(max([(await client.get_run(rid)).updated_at for rid in done]))
        assert await client.prune(older_than=0) == 3
        for rid in done:
            with pytest.raises(tako.RunNotFound):
                await client.get_run(rid)
        assert (await client.get_run(waiting)).status == "waiting"  # unfinished runs stay
