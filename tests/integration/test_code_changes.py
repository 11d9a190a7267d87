"""Workflow code that changes under a parked run: replay by step name, and a clear
refusal when a name now means another kind of step (never the old result handed on)."""

from __future__ import annotations

import pytest

import tako
from tests.conftest import App, running

V1 = """
    from tako import workflow

    @workflow("onboard")
    async def onboard(payload, step):
        await step.run("account", lambda: "acct-1")
        answer = await step.wait_for("answer")
        return {"answer": answer}
"""

# the same name, now an approval: the recorded signal payload must not become a decision
V2_OTHER_KIND = """
    from tako import workflow

    @workflow("onboard")
    async def onboard(payload, step):
        await step.run("account", lambda: "acct-1")
        decision = await step.approval("answer", summary="Onboard?")
        return {"answer": decision.status}
"""

# a new step after the wait and a changed body of a finished one: both fine
V3_COMPATIBLE = """
    from tako import workflow

    @workflow("onboard")
    async def onboard(payload, step):
        await step.run("account", lambda: "acct-CHANGED")
        answer = await step.wait_for("answer")
        welcome = await step.run("welcome", lambda: "sent")
        return {"answer": answer, "welcome": welcome}
"""


async def test_a_name_reused_for_another_kind_of_step_fails_the_run_naming_it(app: App) -> None:
    app.write("onboard.py", V1)
    async with running(app) as supervisor:
        client = app.client()
        run_id = await client.start("onboard")
        assert (await client.wait(run_id, parked=True, timeout=30)).status == "waiting"

        app.write("onboard.py", V2_OTHER_KIND)
        await supervisor.reload()
        await client.signal("answer", {"ok": True}, run_id=run_id)
        run = await client.wait(run_id, timeout=30)
        assert run.status == "failed"
        assert run.attempts == 1  # not retried: the same code would refuse again
        assert "step 'answer' was recorded as a step.wait_for" in (run.error or "")
        assert "now calls step.approval" in (run.error or "")
        assert f"tako runs retry {run_id}" in (run.error or "")
        with pytest.raises(tako.ApprovalNotFound):
            await client.get_approval(f"{run_id}:answer")

        app.write("onboard.py", V3_COMPATIBLE)
        await supervisor.reload()
        await client.retry(run_id)
        run = await client.wait(run_id, timeout=30)
        assert run.result == {"answer": {"ok": True}, "welcome": "sent"}
        account = next(s for s in run.steps or [] if s.name == "account")
        assert account.result == "acct-1"  # finished before the change: not run again
