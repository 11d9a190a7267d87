"""Child runs: `step.invoke` parks the parent until its child ends, `step.start_child`
does not wait; both are recorded with the child's creation, so no replay and no crash
starts a second child; a parent's cancel cascades. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal

from tests.conftest import BOTH_STORES, App, eventually, running
from tests.procs import worker_pids

pytestmark = BOTH_STORES

FLOWS = """
    import os
    from pathlib import Path

    import tako
    from tako import workflow

    def effect(line):
        with open(EFFECTS, "a") as f:
            f.write(line + "\\n")

    @workflow("parent")
    async def parent(payload, step):
        total = await step.invoke("price", "price", {"items": payload["items"]})
        audit = await step.start_child("audit", "audit", {"total": total})
        try:
            await step.invoke("fail", "boom", None)
        except tako.ChildFailed as exc:
            failed = str(exc)
        return {"total": total, "audit": audit, "failed": failed}

    @workflow("price")
    async def price(payload, step):
        effect("price")
        return await step.run("sum", lambda: sum(payload["items"]))

    @workflow("audit")
    async def audit(payload, step):
        return await step.run("note", lambda: effect(f"audit {payload['total']}"))

    @workflow("boom", retries=0)
    async def boom(payload, step):
        raise tako.NonRetryable("out of stock")

    @workflow("slow-parent")
    async def slow_parent(payload, step):
        return await step.invoke("slow", "slow", payload)

    @workflow("slow")
    async def slow(payload, step):
        marker = Path(payload["dir"])
        def block():
            effect("slow started")
            (marker / "started").touch()
            while not (marker / "go").exists():
                import time; time.sleep(0.01)
            return "done"
        return await step.run("block", block)

    @workflow("waiting-parent")
    async def waiting_parent(payload, step):
        await step.start_child("loose", "waiter", None)
        return await step.invoke("held", "waiter", None)

    @workflow("waiter")
    async def waiter(payload, step):
        return await step.wait_for("never")
"""


async def test_invoke_and_start_child(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        run_id = await client.start("parent", {"items": [3, 4]})
        result = await client.result(run_id, timeout=30)
        audit_id = result["audit"]
        assert result["total"] == 7
        assert result["failed"].startswith(f"child run {run_id}.fail (boom) failed:")
        assert "out of stock" in result["failed"]
        assert await client.result(audit_id, timeout=30) is None
        parent = await client.get_run(run_id)
        kids = {c.run_id: (c.workflow, c.status) for c in parent.children or []}
        assert kids == {
            f"{run_id}.price": ("price", "completed"),
            audit_id: ("audit", "completed"),
            f"{run_id}.fail": ("boom", "failed"),
        }
        assert [s.kind for s in parent.steps or []] == ["invoke", "child", "invoke"]
        child = await client.get_run(f"{run_id}.price")
        assert child.parent_run_id == run_id and child.children is None
        assert parent.parent_run_id is None
    assert sorted(app.effects()) == ["audit 7", "price"]  # each child ran once


async def test_a_worker_killed_while_the_child_runs_leaves_exactly_one_child(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        run_id = await client.start("slow-parent", {"dir": str(app.dir)})
        await eventually(lambda: (app.dir / "started").exists(), what="the child's step")
        for pid in worker_pids(app.dir):
            os.kill(pid, signal.SIGKILL)
        (app.dir / "started").unlink()
        await eventually(lambda: (app.dir / "started").exists(), what="the child again")
        (app.dir / "go").touch()
        assert await client.result(run_id, timeout=30) == "done"
        slow_runs = await client.list_runs(workflow="slow")
        assert [r.run_id for r in slow_runs] == [f"{run_id}.slow"]
    assert app.effects() == ["slow started", "slow started"]  # its step again, not a child


async def test_cancelling_a_parent_cancels_its_unfinished_children(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        run_id = await client.start("waiting-parent")
        held = f"{run_id}.held"

        async def both_waiting() -> bool:
            runs = await client.list_runs(workflow="waiter")
            return len(runs) == 2 and all(r.status == "waiting" for r in runs)

        await eventually(both_waiting, what="both children waiting")
        assert (await client.get_run(run_id)).waiting_for == f"run:{held}"
        await client.cancel(run_id, "order withdrawn")
        for child in await client.list_runs(workflow="waiter"):
            run = await client.wait(child.run_id, timeout=30)
            assert run.status == "cancelled"
            assert run.error == f"its parent run {run_id} was cancelled"
        assert (await client.get_run(run_id)).status == "cancelled"
