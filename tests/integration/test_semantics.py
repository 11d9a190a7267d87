"""Run, signal and step semantics, each against a real takod and real workers."""

from __future__ import annotations

import time

import pytest
import trio

import tako
from tests.conftest import BOTH_STORES, App, eventually, running, status_of

pytestmark = BOTH_STORES  # the core of the engine, on SQLite and on PostgreSQL

EFFECT = """
    from tako import workflow, Step, NonRetryable

    def effect(line):
        with open(EFFECTS, "a") as f:
            f.write(line + "\\n")

    def count(prefix):
        try:
            lines = open(EFFECTS).read().splitlines()
        except FileNotFoundError:
            lines = []
        return sum(1 for l in lines if l.startswith(prefix))
"""


async def test_a_failing_run_is_retried_with_backoff_then_fails_with_traceback(app: App) -> None:
    app.write(
        "flaky.py",
        EFFECT
        + """
    @workflow(retries=2)
    async def flaky(payload, step):
        await step.run("once", lambda: effect("once"))
        effect(f"attempt:{step.attempt}")
        raise RuntimeError(f"boom {step.attempt}")
    """,
    )
    async with running(app):
        client = app.client()
        started = time.monotonic()
        run_id = await client.start("flaky")
        with pytest.raises(tako.RunFailed, match="boom 3"):
            await client.result(run_id, timeout=30)
        elapsed = time.monotonic() - started
        run = await client.get_run(run_id)
    assert run.status == "failed"
    assert run.attempts == 3
    assert run.error == "RuntimeError: boom 3"
    assert "Traceback" in (run.traceback or "") and "boom 3" in (run.traceback or "")
    assert app.effects() == ["once", "attempt:1", "attempt:2", "attempt:3"]
    assert elapsed >= 0.8 + 1.6  # 1 s then 2 s of backoff, each at most 20 % early


async def test_non_retryable_fails_at_once(app: App) -> None:
    app.write(
        "fatal.py",
        EFFECT
        + """
    @workflow(retries=5)
    async def fatal(payload, step):
        effect("ran")
        raise NonRetryable("card declined")
    """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("fatal")
        with pytest.raises(tako.RunFailed, match="card declined"):
            await client.result(run_id, timeout=15)
    assert app.effects() == ["ran"]


async def test_start_is_idempotent_by_run_id_and_delay_defers_it(app: App) -> None:
    app.write(
        "hello.py",
        EFFECT
        + """
    @workflow
    async def hello(payload, step):
        effect("hello")
        return payload
    """,
    )
    async with running(app):
        client = app.client()
        first = await client.start_run("hello", {"n": 1}, run_id="order-42:hello")
        again = await client.start_run("hello", {"n": 2}, run_id="order-42:hello")
        assert (first.run_id, first.deduplicated) == ("order-42:hello", False)
        assert (again.run_id, again.deduplicated) == ("order-42:hello", True)
        assert await client.result("order-42:hello", timeout=15) == {"n": 1}

        started = time.monotonic()
        delayed = await client.start("hello", {"n": 3}, delay="1s")
        run = await client.get_run(delayed)
        assert run.status == "pending" and run.wake_at is not None
        assert await client.result(delayed, timeout=15) == {"n": 3}
        assert time.monotonic() - started >= 0.95
        with pytest.raises(tako.InvalidRequest, match="run_id"):
            await client.start("hello", run_id="bad id with spaces")
        with pytest.raises(tako.UnknownWorkflow, match="hello"):
            await client.start("nope")
    assert app.effects() == ["hello", "hello"]


async def test_cancel_a_waiting_run_and_a_running_one_at_its_next_step(app: App) -> None:
    app.write(
        "cancel.py",
        EFFECT
        + """
    import os, time

    @workflow
    async def parked(payload, step):
        return await step.wait_for("never")

    def slow():
        effect("slow-started")
        while not os.path.exists(EFFECTS + ".release"):  # in flight until the test says
            time.sleep(0.01)

    @workflow
    async def busy(payload, step):
        await step.run("slow", slow)
        await step.run("after", lambda: effect("after"))
        return "done"
    """,
    )
    async with running(app):
        client = app.client()
        parked = await client.start("parked")
        await eventually(lambda: status_of(client, parked, "waiting"))
        run = await client.cancel(parked)
        assert run.status == "cancelled"
        with pytest.raises(tako.RunCancelled):
            await client.result(parked, timeout=5)

        busy = await client.start("busy")
        await eventually(lambda: "slow-started" in app.effects(), what="the slow step")
        run = await client.cancel(busy)
        assert (run.status, run.cancel_requested) == ("running", True)
        (app.dir / "effects.log.release").write_text("")  # the step in flight ends
        with pytest.raises(tako.RunCancelled):
            await client.result(busy, timeout=15)
        run = await client.get_run(busy)
        assert [s.key for s in run.steps or []] == ["slow"]  # it stopped at the boundary
        with pytest.raises(tako.NotAllowed):
            await client.cancel(busy)
    assert "after" not in app.effects()


async def test_retry_resumes_a_failed_run_at_the_step_that_failed(app: App) -> None:
    app.write(
        "resume.py",
        EFFECT
        + """
    import os

    def ship():
        effect("ship-attempt")
        if not os.path.exists(EFFECTS + ".fixed"):
            raise RuntimeError("carrier down")
        return "shipped"

    @workflow(retries=0)
    async def order(payload, step):
        await step.run("charge", lambda: effect("charge"))
        return await step.run("ship", ship)
    """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("order")
        with pytest.raises(tako.RunFailed, match="carrier down"):
            await client.result(run_id, timeout=15)
        failed = await client.get_run(run_id)
        assert [(s.key, s.status) for s in failed.steps or []] == [
            ("charge", "completed"),
            ("ship", "failed"),
        ]
        (app.dir / "effects.log.fixed").write_text("")
        run = await client.retry(run_id)
        assert run.status in ("pending", "running")
        assert await client.result(run_id, timeout=15) == "shipped"
        with pytest.raises(tako.NotAllowed):
            await client.retry(run_id)
    assert app.effects() == ["charge", "ship-attempt", "ship-attempt"]


async def test_a_run_past_its_timeout_fails_with_reason_timeout(app: App) -> None:
    app.write(
        "slow.py",
        """
        from tako import workflow

        @workflow(timeout="500ms")
        async def slow(payload, step):
            await step.sleep("forever", "1h")
        """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("slow")
        with pytest.raises(tako.RunFailed, match="timeout"):
            await client.result(run_id, timeout=15)
        assert (await client.get_run(run_id)).error == "timeout"


async def test_step_retries_back_off_durably_and_then_reach_the_handler(app: App) -> None:
    app.write(
        "steps.py",
        EFFECT
        + """
    from tako import StepFailed

    def wobbly():
        effect("try")
        if count("try") < 2:
            raise ConnectionError("flaky network")
        return "ok"

    def broken():
        effect("broken")
        raise ValueError("always")

    @workflow(retries=0)
    async def steps(payload, step):
        first = await step.run("wobbly", wobbly, retries=3)
        try:
            await step.run("broken", broken, retries=1)
        except StepFailed as exc:
            return [first, str(exc)]
    """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("steps")
        first, message = await client.result(run_id, timeout=20)
        run = await client.get_run(run_id)
    assert first == "ok"
    assert "always" in message and "2 attempt" in message
    assert app.effects().count("try") == 2
    assert app.effects().count("broken") == 2
    by_key = {s.key: s for s in run.steps or []}
    assert (by_key["wobbly"].status, by_key["wobbly"].attempts) == ("completed", 2)
    assert (by_key["broken"].status, by_key["broken"].attempts) == ("failed", 2)


async def test_step_timeout_counts_as_a_failed_attempt(app: App) -> None:
    app.write(
        "timeouts.py",
        """
        import anyio
        from tako import workflow, StepFailed

        @workflow(retries=0)
        async def slow_step(payload, step):
            async def hang():
                await anyio.sleep(30)
            try:
                await step.run("hang", hang, timeout="200ms")
            except StepFailed as exc:
                return str(exc)
        """,
    )
    async with running(app):
        client = app.client()
        message = await client.result(await client.start("slow-step"), timeout=15)
    assert "timeout of 0.2s" in message


async def test_typed_payloads_results_and_waits(app: App) -> None:
    app.write(
        "typed.py",
        """
        from typing import Literal
        import msgspec
        from tako import workflow

        class Order(msgspec.Struct):
            order_id: int
            total: float = 0.0

        class Decision(msgspec.Struct):
            kind: Literal["approved", "rejected"]
            by: str

        class Point(msgspec.Struct):
            x: int
            y: int

        @workflow
        async def typed(order: Order, step):
            point = await step.run("point", lambda: Point(order.order_id, 2), type=Point)
            assert isinstance(point, Point)
            decision = await step.wait_for("decision", type=Decision)
            assert isinstance(decision, Decision)
            return {"point": point, "kind": decision.kind, "by": decision.by}
        """,
    )
    async with running(app):
        client = app.client()
        with pytest.raises(tako.RunFailed, match="order_id"):
            bad = await client.start("typed", {"total": 1})
            await client.result(bad, timeout=15)
        assert (await client.get_run(bad)).attempts == 1  # not retried
        run_id = await client.start("typed", {"order_id": 5})
        await eventually(lambda: status_of(client, run_id, "waiting"))
        with pytest.raises(tako.InvalidRequest, match="kind"):
            await client.signal("decision", {"kind": "maybe", "by": "x"}, run_id=run_id)
        # a broadcast of the wrong shape is not delivered to this run: it is kept
        wrong = await client.signal("decision", {"kind": "maybe", "by": "x"})
        assert wrong == tako.SignalResult(delivered=0, kept=True)
        assert (await client.get_run(run_id)).status == "waiting"
        right = await client.signal("decision", {"kind": "approved", "by": "alice"})
        assert right == tako.SignalResult(delivered=1, kept=False)
        result = await client.result(run_id, timeout=15)
    assert result == {"point": {"x": 5, "y": 2}, "kind": "approved", "by": "alice"}


async def test_limits_give_clear_errors(app: App) -> None:
    app.configure(runs={"max_payload": "1KiB"})
    app.write(
        "limits.py",
        """
        from tako import workflow, StepFailed

        @workflow(retries=3)
        async def big_result(payload, step):
            await step.run("huge", lambda: "x" * 5000)

        @workflow(retries=3)
        async def unencodable(payload, step):
            await step.run("obj", lambda: object())

        @workflow(retries=3)
        async def long_name(payload, step):
            await step.run("n" * 300, lambda: 1)
        """,
    )
    async with running(app):
        client = app.client()
        with pytest.raises(tako.PayloadTooLarge, match="1024-byte limit"):
            await client.start("big-result", "x" * 2000)
        with pytest.raises(tako.PayloadTooLarge):
            await client.signal("e", "x" * 2000)
        run_id = await client.start("big-result")
        with pytest.raises(tako.RunFailed, match=r"huge.*over the 1024-byte limit"):
            await client.result(run_id, timeout=15)
        assert (await client.get_run(run_id)).attempts == 1
        run_id = await client.start("unencodable")
        with pytest.raises(tako.RunFailed, match="'obj' returned a object, which JSON cannot"):
            await client.result(run_id, timeout=15)
        run_id = await client.start("long-name")
        with pytest.raises(tako.RunFailed, match="1 to 256 characters"):
            await client.result(run_id, timeout=15)


async def test_many_concurrent_runs_all_complete(app: App) -> None:
    app.write(
        "fan.py",
        """
        from tako import workflow

        @workflow
        async def fan(payload, step):
            total = 0
            for i in range(5):
                total += await step.run(f"s{i}", lambda i=i: i * payload)
            return total
        """,
    )

    def drive() -> tuple[list[int], dict[str, int]]:
        # the blocking client, as a script or a web handler uses it (in a thread here,
        # because takod runs on this test's event loop)
        with app.sync_client() as client:
            ids = [client.start("fan", n) for n in range(100)]
            return [client.result(rid, timeout=30) for rid in ids], client.status()["runs"]

    async with running(app):
        results, counts = await trio.to_thread.run_sync(drive)
    assert results == [10 * n for n in range(100)]
    assert counts == {"completed": 100}


async def test_steps_signal_other_runs_and_log_with_their_run_id(
    app: App, capfd: pytest.CaptureFixture[str]
) -> None:
    app.write(
        "ping.py",
        """
        import tako
        from tako import workflow

        @workflow
        async def waiter(payload, step):
            return await step.wait_for("ping")

        @workflow
        async def pinger(payload, step):
            step.log.info("pinging from %s attempt %d", step.workflow, step.attempt)
            sent = await step.run(
                "ping", lambda: tako.signal("ping", {"from": step.run_id}, run_id=payload)
            )
            return sent
        """,
    )
    async with running(app):
        client = app.client()
        waiter = await client.start("waiter")
        await eventually(lambda: status_of(client, waiter, "waiting"))
        pinger = await client.start("pinger", waiter)
        assert await client.result(pinger, timeout=15) == {"delivered": 1, "kept": False}
        assert await client.result(waiter, timeout=15) == {"from": pinger}
    err = capfd.readouterr().err
    assert f"[{pinger} -] tako.run: pinging from pinger attempt 1" in err


async def test_null_results_that_need_no_parking_continue_at_once(app: App) -> None:
    app.write(
        "nulls.py",
        """
        from datetime import datetime, timezone
        from tako import workflow

        @workflow
        async def no_wait(payload, step):
            await step.sleep("zero", 0)
            await step.sleep_until("past", datetime(2000, 1, 1, tzinfo=timezone.utc))
            kept = await step.wait_for("kept-null")  # a kept signal whose payload is null
            return ["done", kept]
        """,
    )
    async with running(app):
        client = app.client()
        assert await client.signal("kept-null") == tako.SignalResult(delivered=0, kept=True)
        run_id = await client.start("no-wait")
        assert await client.result(run_id, timeout=15) == ["done", None]
        run = await client.get_run(run_id)
    assert [(s.key, s.kind, s.status) for s in run.steps or []] == [
        ("zero", "sleep", "completed"),
        ("past", "sleep", "completed"),
        ("kept-null", "wait", "completed"),
    ]


async def test_non_retryable_inside_a_step_fails_the_run_at_once(app: App) -> None:
    app.write(
        "inner.py",
        EFFECT
        + """
    def declined():
        effect("charge")
        raise NonRetryable("card declined")

    @workflow(retries=3)
    async def inner(payload, step):
        await step.run("charge", declined, retries=2)
    """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("inner")
        with pytest.raises(tako.RunFailed, match="card declined"):
            await client.result(run_id, timeout=15)
        run = await client.get_run(run_id)
    assert app.effects() == ["charge"]  # neither the step nor the run was retried
    assert run.attempts == 1
    assert [(s.key, s.status) for s in run.steps or []] == [("charge", "failed")]


async def test_a_retried_run_gets_a_fresh_timeout(app: App) -> None:
    """The retried run lives its whole timeout again, counted from the retry: another
    run's wake-up falling due meanwhile (a scheduler pass that fails every deadline
    already past) must not end it early."""
    app.write(
        "deadline.py",
        """
        from tako import workflow

        @workflow(timeout="2s", retries=0)
        async def deadline(payload, step):
            await step.sleep("nap", payload)
            return "woke"

        @workflow
        async def tick(payload, step):
            await step.sleep("tick", "100ms")
            return "ticked"
        """,
    )
    async with running(app):
        client = app.client()
        run_id = await client.start("deadline", "1h")
        with pytest.raises(tako.RunFailed, match="timeout"):
            await client.result(run_id, timeout=15)
        retried_at = time.time()
        await client.retry(run_id)
        await eventually(lambda: status_of(client, run_id, "sleeping"), what="it to run again")
        assert await client.result(await client.start("tick"), timeout=15) == "ticked"
        with pytest.raises(tako.RunFailed, match="timeout"):
            await client.result(run_id, timeout=15)
        failed = await client.get_run(run_id)
    # takod stamps the failure with its own clock (the same wall clock as ours, in ms)
    lived = failed.updated_at.timestamp() - retried_at
    assert lived >= 2.0 - 0.002, f"the retried run timed out {lived:.3f}s after its retry"
