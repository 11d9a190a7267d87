"""Cron schedules driven by the test kit's clock: one run per tick with the id
`<workflow>@<tick>`, in the schedule's time zone across a daylight-saving change,
and after a restart no tick twice and none lost beyond what `catch_up` allows."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tako.testing import SyncEnv

NIGHTLY = """
    from tako import workflow

    @workflow("nightly", schedule="30 2 * * *", timezone="Europe/Paris", catch_up=CATCH_UP)
    async def nightly(payload, step):
        return await step.run("report", lambda: step.run_id)
"""


def app(root: Path, catch_up: str) -> Path:
    (root / "workflows").mkdir(parents=True)
    text = textwrap.dedent(NIGHTLY).replace("CATCH_UP", repr(catch_up))
    (root / "workflows" / "nightly.py").write_text(text)
    return root


def ticks(env: SyncEnv) -> list[str]:
    assert env.client is not None
    runs = env.client.list_runs(workflow="nightly", limit=1000)
    assert all(r.status == "completed" and r.result == r.run_id for r in runs)
    return sorted(r.run_id.removeprefix("nightly@") for r in runs)


def test_ticks_follow_paris_time_across_the_spring_change(tmp_path: Path) -> None:
    start = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    with SyncEnv(app(tmp_path, "latest"), start_at=start) as env:
        env.advance("3d")
        assert ticks(env) == [
            "2026-03-28T01:30:00Z",  # 02:30 in Paris (UTC+1)
            "2026-03-29T01:00:00Z",  # 02:30 does not exist that night: 03:00 (UTC+2)
            "2026-03-30T00:30:00Z",  # 02:30 in Paris (UTC+2)
        ]
        assert env.client is not None
        (row,) = env.client.schedules()
        assert row.next_tick == "2026-03-31T00:30:00.000Z"


@pytest.mark.parametrize(
    ("catch_up", "caught_up"),
    [
        ("latest", ["2026-11-04T01:30:00Z"]),
        ("all", ["2026-11-02T01:30:00Z", "2026-11-03T01:30:00Z", "2026-11-04T01:30:00Z"]),
        ("none", []),
    ],
)
def test_a_restart_neither_repeats_nor_loses_ticks_beyond_catch_up(
    tmp_path: Path, catch_up: str, caught_up: list[str]
) -> None:
    start = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    with SyncEnv(app(tmp_path, catch_up), start_at=start) as env:
        env.advance("1d")
        before = ticks(env)
        assert before == ["2026-11-01T01:30:00Z"]
        env.restart()  # nothing missed: nothing started again
        env.settle()
        assert ticks(env) == before
        env.restart(down_for="3d")  # down across three ticks
        env.settle()
        assert ticks(env) == before + caught_up
        env.advance("1d")
        assert ticks(env) == [*before, *caught_up, "2026-11-05T01:30:00Z"]
