"""`GET /metrics`'s numbers, read over the socket as the HTTP app reads them: they move
when runs move (starts, steps, parks, resumes, commits, approvals, the outbox)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tako._protocol import Metrics
from tako._replies import MetricsReply
from tako.testing import SyncEnv

FLOWS = """
    import tako
    from tako import workflow

    @workflow("greet")
    async def greet(payload, step):
        await step.run("hello", lambda: "hi")
        name = await step.wait_for("name")
        return await step.run("reply", lambda: f"hi {name}")

    @workflow("spend")
    async def spend(payload, step):
        decision = await step.approval("ok", summary="Spend?", remind_every="1h")
        return decision.status

    @tako.notifier
    def quiet(event: tako.ApprovalEvent) -> None:
        pass
"""


def scrape(env: SyncEnv) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert env.client is not None
    text = env.client.call(Metrics(), MetricsReply).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_numbers_follow_the_runs(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "flows.py").write_text(textwrap.dedent(FLOWS))
    with SyncEnv(tmp_path) as env:
        empty = scrape(env)
        assert empty[("tako_step_seconds_count", ())] == 0
        assert empty[("tako_runs_started_total", ())] == 0

        runs = [env.start("greet") for _ in range(3)]
        m = scrape(env)
        waiting = ("tako_runs", (("status", "waiting"), ("workflow", "greet")))
        assert m[waiting] == 3
        assert m[("tako_runs_started_total", ())] == 3
        assert m[("tako_step_seconds_count", ())] == 3  # "hello" of each
        assert m[("tako_commits_total", ())] > 0
        assert m[("tako_steps_per_commit_count", ())] >= 1
        assert m[("tako_resume_seconds_count", ())] == 0

        assert env.signal("name", "ann").delivered == 3
        m = scrape(env)
        assert m.get(waiting, 0) == 0
        assert m[("tako_runs", (("status", "completed"), ("workflow", "greet")))] == 3
        assert m[("tako_runs_finished_total", (("status", "completed"),))] == 3
        assert m[("tako_resume_seconds_count", ())] == 3
        assert m[("tako_step_seconds_count", ())] == 6
        assert m[("tako_ready_runs", ())] == 0
        assert all(env.result(r) == "hi ann" for r in runs)

        spend = env.start("spend")
        m = scrape(env)
        assert (m[("tako_approvals_pending", ())], m[("tako_approvals_overdue", ())]) == (1, 0)
        env.advance("1h")  # the first reminder: someone was due to act
        m = scrape(env)
        assert (m[("tako_approvals_pending", ())], m[("tako_approvals_overdue", ())]) == (1, 1)
        assert m[("tako_outbox_backlog", ())] == 0  # requested and reminder, both delivered
        env.approve(f"{spend}:ok")
        m = scrape(env)
        assert (m[("tako_approvals_pending", ())], m[("tako_approvals_overdue", ())]) == (0, 0)
        assert env.result(spend) == "approved"
