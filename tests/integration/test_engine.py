"""The engine end to end: real takod, real worker subprocesses, a temp app, both runtimes."""

from __future__ import annotations

import itertools
import time

import pytest

import tako
from tests.conftest import BOTH_STORES, App, clock_past, eventually, running, status_of
from tests.procs import worker_pids

pytestmark = BOTH_STORES  # the core of the engine, on SQLite and on PostgreSQL

ORDER = """
    from tako import workflow, Step

    def effect(line):
        with open(EFFECTS, "a") as f:
            f.write(line + "\\n")

    def charge(order):
        effect(f"charge:{order['id']}")
        return {"charge_id": "ch_" + str(order["id"])}

    @workflow("fulfill-order", retries=4)
    async def fulfill_order(payload: dict, step: Step) -> dict:
        order = await step.run("load-order", lambda: {"id": payload["order_id"], "total": 60_000})
        await step.run("charge", lambda: charge(order), retries=2)
        if order["total"] > 50_000:
            decision = await step.wait_for(f"approval:order-{order['id']}", timeout="7d")
            if decision is None:
                step.bail("approval timed out — order held")
            if not decision["approved"]:
                step.bail(f"rejected by {decision['by']}")
        await step.run("ship", lambda: effect(f"ship:{order['id']}"))
        return {"shipped": order["id"]}
"""


async def test_order_is_approved_by_a_signal_and_charged_once(app: App) -> None:
    app.write("fulfill_order.py", ORDER)
    async with running(app):
        client = app.client()
        run_id = await client.start("fulfill-order", {"order_id": 42})
        run = await eventually(lambda: status_of(client, run_id, "waiting"), what="waiting")
        assert run.waiting_for == "approval:order-42"
        sent = await client.signal("approval:order-42", {"approved": True, "by": "u-7"})
        assert sent == tako.SignalResult(delivered=1, kept=False)
        assert await client.result(run_id, timeout=15) == {"shipped": 42}
        run = await client.get_run(run_id)
    assert app.effects() == ["charge:42", "ship:42"]
    assert [s.key for s in run.steps or []] == [
        "load-order",
        "charge",
        "approval:order-42",
        "ship",
    ]
    wait = (run.steps or [])[2]
    assert (wait.kind, wait.status, wait.result) == (
        "wait",
        "completed",
        {"approved": True, "by": "u-7"},
    )


async def test_rejection_bails_the_run_as_cancelled(app: App) -> None:
    app.write("fulfill_order.py", ORDER)
    async with running(app):
        client = app.client()
        run_id = await client.start("fulfill-order", {"order_id": 7})
        await eventually(lambda: status_of(client, run_id, "waiting"))
        await client.signal("approval:order-7", {"approved": False, "by": "alice"})
        with pytest.raises(tako.RunCancelled, match="rejected by alice"):
            await client.result(run_id, timeout=15)
        run = await client.get_run(run_id)
    assert run.status == "cancelled"
    assert run.error == "rejected by alice"
    assert run.attempts == 1  # a bail is never retried


async def test_scale_to_zero_then_a_signal_spawns_a_worker(app: App) -> None:
    app.configure(workers={"idle_timeout": "300ms"})
    app.write("fulfill_order.py", ORDER)
    async with running(app) as supervisor:
        client = app.client()
        run_id = await client.start("fulfill-order", {"order_id": 1})
        await eventually(lambda: status_of(client, run_id, "waiting"))
        await eventually(lambda: not worker_pids(app.dir), what="the idle worker to exit")
        await eventually(lambda: supervisor.pool.live == 0, what="takod to reap the worker")
        assert (await client.status())["workers"] == 0
        await client.signal("approval:order-1", {"approved": True, "by": "bob"})
        assert await client.result(run_id, timeout=15) == {"shipped": 1}
        assert app.effects() == ["charge:1", "ship:1"]
        await eventually(lambda: not worker_pids(app.dir), what="the worker to exit again")


async def test_step_names_repeat_with_occurrence_keys_and_every_sleep_is_honoured(app: App) -> None:
    app.write(
        "deploy.py",
        """
        import time
        from tako import workflow

        @workflow
        async def rolling_deploy(payload, step):
            out = []
            for env in ["staging", "canary", "prod"]:
                await step.sleep("cool-down", "1s")
                out.append(await step.run("deploy", lambda: {"env": env, "at": time.time()}))
            return out
        """,
    )
    async with running(app):
        client = app.client()
        started = time.time()
        run_id = await client.start("rolling-deploy")
        result = await client.result(run_id, timeout=30)
        run = await client.get_run(run_id)
    assert [r["env"] for r in result] == ["staging", "canary", "prod"]
    keys = [s.key for s in run.steps or []]
    assert keys == ["cool-down", "deploy", "cool-down#2", "deploy#2", "cool-down#3", "deploy#3"]
    assert all(s.name in ("cool-down", "deploy") for s in run.steps or [])
    # every deploy ran at least one second after the previous one (or after the start)
    times = [started] + [r["at"] for r in result]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


async def test_wait_timeout_returns_none_and_replays_as_none(app: App) -> None:
    app.write(
        "timeouts.py",
        """
        from tako import workflow

        def effect(line):
            with open(EFFECTS, "a") as f:
                f.write(line + "\\n")

        @workflow
        async def hold(payload, step):
            decision = await step.wait_for("go", timeout="300ms")
            effect(f"saw:{decision}")
            if decision is None:
                await step.run("timeout-path", lambda: effect("timeout-path"))
                await step.sleep("breather", "200ms")  # forces a replay after the timeout
                return "timed out"
            return "went"
        """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("hold")
        assert await client.result(run_id, timeout=15) == "timed out"
        run = await client.get_run(run_id)
        # the timeout was checkpointed: a signal now is kept, not delivered to the finished run
        assert await client.signal("go", {"x": 1}) == tako.SignalResult(delivered=0, kept=True)
    wait = (run.steps or [])[0]
    assert (wait.key, wait.kind, wait.status, wait.result) == ("go", "wait", "completed", None)
    # executions: after the timeout, then the replay after the sleep; both saw None
    assert app.effects() == ["saw:None", "timeout-path", "saw:None"]


async def test_a_signal_sent_before_its_waiter_is_kept_and_consumed_once(app: App) -> None:
    app.write(
        "late.py",
        """
        from tako import workflow

        @workflow
        async def late_waiter(payload, step):
            await step.sleep("later", "200ms")
            return await step.wait_for("ready")
        """,
    )
    async with running(app):
        client = app.client()
        assert await client.signal("ready", {"n": 1}) == tako.SignalResult(delivered=0, kept=True)
        first = await client.start("late-waiter")
        assert await client.result(first, timeout=15) == {"n": 1}
        second = await client.start("late-waiter")
        await eventually(lambda: status_of(client, second, "waiting"))  # nothing left to consume
        assert await client.signal("ready", {"n": 2}) == tako.SignalResult(delivered=1, kept=False)
        assert await client.result(second, timeout=15) == {"n": 2}


async def test_a_run_targeted_signal_wakes_only_its_run(app: App) -> None:
    app.write(
        "decide.py",
        """
        from tako import workflow

        @workflow
        async def decide(payload, step):
            return await step.wait_for("decision")
        """,
    )
    async with running(app):
        client = app.client()
        a = await client.start("decide")
        b = await client.start("decide")
        await eventually(lambda: status_of(client, a, "waiting"))
        await eventually(lambda: status_of(client, b, "waiting"))
        sent = await client.signal("decision", {"kind": "approved"}, run_id=b)
        assert sent == tako.SignalResult(delivered=1, kept=False)
        assert await client.result(b, timeout=15) == {"kind": "approved"}
        assert (await client.get_run(a)).status == "waiting"
        # a broadcast wakes every current waiter
        assert await client.signal("decision", {"kind": "late"}) == tako.SignalResult(1, False)
        assert await client.result(a, timeout=15) == {"kind": "late"}
        with pytest.raises(tako.RunNotFound):
            await client.signal("decision", {}, run_id="no-such-run")


async def test_restart_resumes_sleeping_and_waiting_runs(app: App) -> None:
    app.write(
        "parked.py",
        """
        from tako import workflow

        @workflow
        async def napper(payload, step):
            await step.sleep("nap", payload["nap"])
            return "rested"

        @workflow
        async def waiter(payload, step):
            return await step.wait_for("wake-up")
        """,
    )
    async with running(app):
        client = app.client()
        short = await client.start("napper", {"nap": "1s"})
        long = await client.start("napper", {"nap": "5s"})
        waiting = await client.start("waiter")
        for rid, status in ((short, "sleeping"), (long, "sleeping"), (waiting, "waiting")):
            await eventually(lambda rid=rid, status=status: status_of(client, rid, status))
        short_due = (await client.get_run(short)).wake_at
        long_due = (await client.get_run(long)).wake_at
    assert short_due is not None and long_due is not None
    await clock_past(short_due)  # takod is down while the short nap falls due
    assert not worker_pids(app.dir)
    async with running(app):
        client = app.client()
        assert await client.result(short, timeout=15) == "rested"
        # due while takod was down, it fires at the restart, not with the next timer due
        # (the long nap's): takod's own timestamps say which came first
        woke = (await client.get_run(short)).updated_at
        assert woke < long_due, f"the overdue nap ended at {woke}, the long nap is due {long_due}"
        await client.signal("wake-up", "now")
        assert await client.result(waiting, timeout=15) == "now"
        assert await client.result(long, timeout=15) == "rested"


CROWD = """
    import time
    from tako import workflow

    @workflow
    async def crowd(payload, step):
        if payload["by"] == "signal":
            got = await step.wait_for("all-at-once")
        else:
            got = await step.sleep_until("together", payload["at"])
        await step.run("after", lambda: None)
        return got
"""


async def test_runs_woken_together_beyond_the_workers_room_all_complete(app: App) -> None:
    """A wake-up claims what the warm worker has room for in its own transaction; the
    others wait in the queue for room, whether a signal or a timer woke them."""
    app.write("crowd.py", CROWD)
    app.configure(workers={"concurrency": 3, "max_workers": 1})
    async with running(app):
        client = app.client()
        warm = await client.start("crowd", {"by": "signal"})
        await eventually(lambda: status_of(client, warm, "waiting"))
        waiters = [await client.start("crowd", {"by": "signal"}) for _ in range(9)]
        at = time.time() + 2
        sleepers = [await client.start("crowd", {"by": "timer", "at": at}) for _ in range(10)]
        for rid in waiters + sleepers:
            await eventually(lambda rid=rid: status_of(client, rid, "waiting", "sleeping"))
        assert worker_pids(app.dir)  # warm: it has room for 3
        sent = await client.signal("all-at-once", "go")
        assert sent.delivered == 10
        for rid in [warm, *waiters]:
            assert await client.result(rid, timeout=15) == "go"
        for rid in sleepers:
            assert await client.result(rid, timeout=15) is None
            run = await client.get_run(rid)
            assert [(s.key, s.status) for s in run.steps or []] == [
                ("together", "completed"),
                ("after", "completed"),
            ]


LOOP = """
    import asyncio
    from tako import workflow

    async def loop_module():
        return type(asyncio.get_running_loop()).__module__

    @workflow
    async def which_loop(payload, step):
        return await step.run("loop", loop_module)
"""


@pytest.mark.parametrize("plain", [False, True])
async def test_asyncio_workers_run_on_uvloop_unless_told_not_to(
    app: App, plain: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if app.runtime != "asyncio":
        pytest.skip("the trio runtime has one loop")
    if plain:
        monkeypatch.setenv("TAKO_NO_UVLOOP", "1")  # takod's environment is its workers'
    app.write("loop.py", LOOP)
    async with running(app):
        client = app.client()
        rid = await client.start("which-loop")
        module = await client.result(rid, timeout=15)
    assert module.startswith("asyncio" if plain else "uvloop")
