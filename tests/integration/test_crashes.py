"""Worker crashes: real kill -9 and os._exit; runs are resumed, innocents are never charged."""

from __future__ import annotations

import os
import signal

import pytest

import tako
from tests.conftest import App, eventually, running
from tests.procs import worker_pids

SLOW = """
    import os, time
    from tako import workflow

    def effect(line):
        with open(EFFECTS, "a") as f:
            f.write(line + "\\n")

    def slow(tag):
        effect(f"start:{tag}")
        time.sleep(30 if not os.path.exists(EFFECTS + ".fast") else 0)
        return tag

    @workflow
    async def crashy(payload, step):
        await step.run("before", lambda: effect("before"))
        value = await step.run("slow", lambda: slow("slow"))
        await step.run("after", lambda: effect("after"))
        return value
"""


async def test_a_worker_killed_mid_step_is_replaced_and_finished_steps_do_not_rerun(
    app: App,
) -> None:
    app.write("crashy.py", SLOW)
    async with running(app):
        client = app.client()
        run_id = await client.start("crashy")
        await eventually(lambda: "start:slow" in app.effects(), what="the slow step")
        (pid,) = worker_pids(app.dir)
        (app.dir / "effects.log.fast").write_text("")
        os.kill(pid, signal.SIGKILL)
        assert await client.result(run_id, timeout=20) == "slow"
        run = await client.get_run(run_id)
    # the finished step ran once; the one in flight at the kill ran again (at least once)
    assert app.effects() == ["before", "start:slow", "start:slow", "after"]
    assert run.attempts == 1  # a first crash is never charged: it may not be this run's fault


async def test_a_poison_run_fails_alone_and_innocent_runs_are_not_charged(app: App) -> None:
    app.write(
        "poison.py",
        """
        import os
        from tako import workflow

        @workflow(retries=1)
        async def poison(payload, step):
            await step.run("die", lambda: os._exit(1))

        @workflow(retries=0)
        async def innocent(payload, step):
            await step.sleep("nap", "300ms")
            return await step.run("work", lambda: payload)
        """,
    )
    async with running(app):
        client = app.client()
        innocents = [await client.start("innocent", n) for n in range(10)]
        poison = await client.start("poison")
        with pytest.raises(tako.RunFailed, match="worker crashed: exited with code 1"):
            await client.result(poison, timeout=60)
        for n, rid in enumerate(innocents):
            assert await client.result(rid, timeout=60) == n
            assert (await client.get_run(rid)).attempts == 1
        run = await client.get_run(poison)
        assert run.attempts == 2  # charged only when it crashed a worker it had alone
