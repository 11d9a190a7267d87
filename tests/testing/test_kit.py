"""tako.testing: a real supervisor and real workers on a clock the test moves.

Each test drives days of workflow time through `advance` and checks what ran
and when, by the supervisor's own records (step and history times are the
moved clock's)."""

from __future__ import annotations

import asyncio
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tako
import tako.testing
from tako.testing import Env, StillParked, SyncEnv

T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)

TRIAL = """
    from tako import Step, workflow

    @workflow("trial")
    async def trial(payload, step: Step):
        await step.sleep("nap", "1d")
        answer = await step.wait_for("answer", timeout="7d")
        return {"answer": answer}
"""

EXPENSE = """
    import tako
    from tako import Step, workflow

    @workflow("expense")
    async def expense(payload, step: Step):
        decision = await step.approval(
            "manager", summary="Team dinner", data=payload, approvers=["alice"],
            timeout="24h", remind_every="4h", escalate_after="10h", escalate_to=["carol"],
        )
        return decision.status

    @tako.notifier
    def record(event: tako.ApprovalEvent) -> None:
        with open(EFFECTS, "a") as f:
            f.write(f"{event.type} {event.at.isoformat()}\\n")
"""

FLAKY = """
    from tako import Step, workflow

    def once_then_ok():
        import os
        if not os.path.exists(EFFECTS):
            open(EFFECTS, "w").close()
            raise ConnectionError("down")
        return "up"

    @workflow("flaky")
    async def flaky(payload, step: Step):
        return await step.run("call", once_then_ok, retries=3)
"""


def make_app(root: Path, **files: str) -> Path:
    (root / "workflows").mkdir(parents=True)
    effects = repr(str(root / "effects.log"))
    for name, source in files.items():
        text = textwrap.dedent(source).replace("EFFECTS", effects)
        (root / "workflows" / f"{name}.py").write_text(text)
    return root


def effects(app: Path) -> list[str]:
    path = app / "effects.log"
    return path.read_text().splitlines() if path.exists() else []


async def test_a_day_of_sleep_and_a_week_of_waiting_pass_in_well_under_a_second(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, trial=TRIAL)
    wall = time.monotonic()
    async with Env(app, start_at=T0) as env:
        run_id = await env.start("trial")
        assert (await env.get_run(run_id)).status == "sleeping"
        await env.advance("23h")
        assert (await env.get_run(run_id)).status == "sleeping"
        await env.advance("1h")
        run = await env.get_run(run_id)
        assert (run.status, run.waiting_for) == ("waiting", "answer")
        await env.advance("6d23h")
        with pytest.raises(StillParked, match="waiting for answer"):
            await env.result(run_id)
        await env.advance("1h")
        assert await env.result(run_id) == {"answer": None}
        run = await env.get_run(run_id)
        assert env.now() == T0 + timedelta(days=8)
    elapsed = time.monotonic() - wall
    print(f"\n1d sleep + 7d wait through advance: {elapsed:.2f}s of wall time")
    nap = next(s for s in run.steps or [] if s.name == "nap")
    assert nap.finished_at == T0 + timedelta(days=1)


async def test_a_signal_before_the_timeout_answers_the_wait(tmp_path: Path) -> None:
    app = make_app(tmp_path, trial=TRIAL)
    async with Env(app, start_at=T0) as env:
        run_id = await env.start("trial")
        await env.advance("1d")
        result = await env.signal("answer", {"yes": True}, run_id=run_id)
        assert result.delivered == 1
        assert await env.result(run_id) == {"answer": {"yes": True}}


async def test_reminders_escalation_and_the_deadline_fire_in_order(tmp_path: Path) -> None:
    app = make_app(tmp_path, expense=EXPENSE)
    async with Env(app, start_at=T0) as env:
        run_id = await env.start("expense", {"amount": 80})
        key = f"{run_id}:manager"
        assert effects(app) == [f"requested {T0.isoformat()}"]
        await env.advance("9h")
        approval = await env.get_approval(key)
        assert approval.approvers == ["alice"]
        fired = await env.advance("15h")
        approval = await env.get_approval(key)
        assert approval.status == "timed_out"
        assert await env.result(run_id) == "timed_out"
    hours = [(e.event, (e.at - T0) / timedelta(hours=1)) for e in approval.history]
    assert hours == [
        ("created", 0), ("notified", 0), ("reminded", 4), ("reminded", 8), ("escalated", 10),
        ("reminded", 12), ("reminded", 16), ("reminded", 20), ("timed_out", 24),
    ]  # fmt: skip
    assert approval.approvers == ["alice", "carol"]
    kinds = [line.split()[0] for line in effects(app)]
    assert kinds == ["requested", *["reminder"] * 2, "escalated", *["reminder"] * 3, "resolved"]
    assert fired >= 4


async def test_a_step_retry_backoff_is_waited_out_by_advance(tmp_path: Path) -> None:
    app = make_app(tmp_path, flaky=FLAKY)
    async with Env(app, start_at=T0) as env:
        run_id = await env.start("flaky")
        assert (await env.get_run(run_id)).status == "sleeping"
        await env.advance("1h")
        assert await env.result(run_id) == "up"


def test_from_a_plain_test_and_under_asyncio(tmp_path: Path) -> None:
    app = make_app(tmp_path, trial=TRIAL)
    with SyncEnv(app, start_at=T0) as env:
        run_id = env.start("trial")
        env.advance("8d")
        assert env.result(run_id) == {"answer": None}

    async def under_asyncio() -> object:
        async with Env(app) as env:
            run_id = await env.start("trial")
            await env.advance("1d")
            await env.signal("answer", 7, run_id=run_id)
            return await env.result(run_id)

    assert asyncio.run(under_asyncio()) == {"answer": 7}


async def test_a_failed_run_raises_as_tako_result_does(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        boom="""
        from tako import NonRetryable, workflow

        @workflow("boom")
        async def boom(payload, step):
            raise NonRetryable("no such order")
        """,
    )
    async with Env(app) as env:
        run_id = await env.start("boom")
        with pytest.raises(tako.RunFailed, match="no such order"):
            await env.result(run_id)


def test_an_app_folder_without_workflows_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no workflows/ folder"):
        SyncEnv(tmp_path)


async def test_a_wait_for_any_times_out_with_none(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        checkout="""
        from tako import workflow

        @workflow("checkout")
        async def checkout(payload, step):
            first = await step.wait_for_any("outcome", ["paid", "declined"], timeout="1h")
            return None if first is None else first.name
        """,
    )
    async with Env(app, start_at=T0) as env:
        run_id = await env.start("checkout")
        await env.advance("59m")
        assert (await env.get_run(run_id)).waiting_for == "paid or declined"
        await env.advance("1m")
        assert await env.result(run_id) is None
