"""`tako schedules` against a real `tako dev`: each scheduled workflow with its next tick,
as text and as JSON; an app without schedules says how to add one."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cli_harness import DevServer, make_app
from cronsim import CronSim

FLOWS = """
    from tako import workflow

    @workflow("weekly-report", schedule="0 9 * * MON", timezone="Europe/Paris")
    async def weekly_report(payload, step):
        return None

    @workflow("unscheduled")
    async def unscheduled(payload, step):
        return None
"""


def test_schedules_lists_next_ticks(tmp_path: Path, data_dir: Path) -> None:
    server = DevServer(make_app(tmp_path / "shop", {"flows.py": FLOWS}), data_dir)
    try:
        listed = server.tako("schedules", "--json")
        assert listed.code == 0, listed.err
        (row,) = listed.json()
        paris = ZoneInfo("Europe/Paris")
        expected = next(CronSim("0 9 * * MON", datetime.now(paris)))
        assert datetime.fromisoformat(row["next_tick"]) == expected
        assert (row["workflow"], row["schedule"], row["timezone"], row["catch_up"]) == (
            "weekly-report", "0 9 * * MON", "Europe/Paris", "latest",
        )  # fmt: skip
        assert row["last_tick"] is None
        text = server.tako("schedules").out
        assert "weekly-report" in text and "0 9 * * MON (Europe/Paris)" in text
        assert "unscheduled" not in text
    finally:
        server.kill()


def test_no_schedules_says_how_to_add_one(tmp_path: Path, data_dir: Path) -> None:
    server = DevServer(
        make_app(tmp_path / "shop", {"flows.py": "from tako import workflow\n"}), data_dir
    )
    try:
        said = server.tako("schedules")
        assert said.code == 0 and "add schedule=" in said.out
    finally:
        server.kill()
