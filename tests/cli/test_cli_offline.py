"""Read commands while the supervisor is down: they read runs.db directly."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_harness import ISO_UTC, OFFLINE_FLOWS, DevServer, make_app, short_data_dir, tako_cmd


@dataclass
class Stopped:
    """An app whose supervisor ran some runs and was then stopped."""

    app: Path
    data_dir: Path
    waiting_id: str
    shown_while_up: Any
    listed_while_up: Any


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stopped]:
    app = make_app(
        tmp_path_factory.mktemp("off") / "offapp", {"flows.py": OFFLINE_FLOWS}, name="offshop"
    )
    data_dir = short_data_dir()
    server = DevServer(app, data_dir)
    try:
        assert server.tako("run", "echo", '{"x": 1}', "--wait").code == 0
        waiting_id = server.client().start("approve", {"n": 2})
        server.wait_status(waiting_id, "waiting")
        shown = server.tako("runs", "show", waiting_id, "--json").json()
        listed = server.tako("runs", "--json").json()
        assert server.stop() == 0
        yield Stopped(app, data_dir, waiting_id, shown, listed)
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_runs_and_runs_show_print_what_the_supervisor_printed(stopped: Stopped) -> None:
    listed = tako_cmd("runs", "--json", "--data-dir", stopped.data_dir, cwd=stopped.app)
    assert listed.code == 0, listed.err
    assert listed.json() == stopped.listed_while_up
    assert "supervisor not running" in listed.err and "runs.db" in listed.err
    shown = tako_cmd("runs", "show", stopped.waiting_id, "--json", "--data-dir", stopped.data_dir)
    assert shown.json() == stopped.shown_while_up
    tree = tako_cmd("runs", "show", stopped.waiting_id, "--data-dir", stopped.data_dir).out
    assert '└ waiting for "go" until' in tree
    filtered = tako_cmd("runs", "--status", "completed", "--json", "--data-dir", stopped.data_dir)
    assert [r["workflow"] for r in filtered.json()] == ["echo"]
    missing = tako_cmd("runs", "show", "nope", "--data-dir", stopped.data_dir)
    assert missing.code == 1 and "nope" in missing.err


def test_the_app_is_found_by_name_folder_or_as_the_only_one(
    stopped: Stopped, tmp_path: Path
) -> None:
    by_name = tako_cmd("runs", "--json", "--app", "offshop", "--data-dir", stopped.data_dir)
    elsewhere = tako_cmd("runs", "--json", "--data-dir", stopped.data_dir, cwd=tmp_path)
    assert by_name.json() == elsewhere.json() == stopped.listed_while_up
    unknown = tako_cmd("runs", "--app", "nope", "--data-dir", stopped.data_dir)
    assert unknown.code == 3 and "nope" in unknown.err


def test_several_apps_need_app(stopped: Stopped, tmp_path: Path) -> None:
    data_dir = short_data_dir()
    try:
        for name in ("one", "two"):
            (data_dir / "apps" / name).mkdir(parents=True)
            for file in (stopped.data_dir / "apps" / "offshop").iterdir():  # runs.db and its WAL
                shutil.copy(file, data_dir / "apps" / name)
        result = tako_cmd("runs", "--data-dir", data_dir, cwd=tmp_path)
        assert result.code == 2 and "--app" in result.err and "one, two" in result.err
        picked = tako_cmd("runs", "--json", "--app", "two", "--data-dir", data_dir, cwd=tmp_path)
        assert picked.code == 0 and len(picked.json()) == 2
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_status_says_down_with_counts_and_exits_3(stopped: Stopped) -> None:
    result = tako_cmd("status", "--json", "--data-dir", stopped.data_dir, cwd=stopped.app)
    assert result.code == 3
    status = result.json()
    assert set(status) == {"supervisor", "pid", "workers", "runs", "next_wake_at"}
    assert (status["supervisor"], status["pid"], status["workers"]) == ("down", None, 0)
    assert status["runs"] == {"completed": 1, "waiting": 1}
    assert ISO_UTC.match(status["next_wake_at"])
    assert str(stopped.data_dir / "tako.sock") in result.err and "tako dev" in result.err
    human = tako_cmd("status", "--data-dir", stopped.data_dir, cwd=stopped.app)
    assert human.code == 3 and "down" in human.out and "waiting 1" in human.out


def test_workflows_loads_the_app_in_a_subprocess(stopped: Stopped, tmp_path: Path) -> None:
    result = tako_cmd("workflows", "--json", "--data-dir", stopped.data_dir, cwd=stopped.app)
    assert result.code == 0, result.err
    registry = result.json()
    assert [w["name"] for w in registry["workflows"]] == ["echo", "approve"]
    assert registry["errors"] == []
    not_an_app = tako_cmd("workflows", "--data-dir", stopped.data_dir, cwd=tmp_path)
    assert not_an_app.code == 3 and "workflows/" in not_an_app.err


def test_writes_need_the_supervisor(stopped: Stopped) -> None:
    for args in (["runs", "cancel", stopped.waiting_id], ["runs", "retry", stopped.waiting_id]):
        result = tako_cmd(*args, "--data-dir", stopped.data_dir)
        assert result.code == 3 and "tako dev" in result.err


def test_a_database_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    data_dir = short_data_dir()
    try:
        (data_dir / "apps" / "junk").mkdir(parents=True)
        (data_dir / "apps" / "junk" / "runs.db").write_bytes(b"not a database at all" * 100)
        result = tako_cmd("runs", "--data-dir", data_dir, cwd=tmp_path)
        assert result.code == 3
        assert "cannot be read" in result.err and "Traceback" not in result.err
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_commands_in_a_folder_below_the_app_find_its_data_as_git_finds_dot_git() -> None:
    root = short_data_dir()
    try:
        app = make_app(root / "app", {"flows.py": OFFLINE_FLOWS})
        deep = app / "src" / "deep"
        deep.mkdir(parents=True)
        server = DevServer(app, app / ".tako")  # the default data dir: APP/.tako
        try:
            ran = tako_cmd("run", "echo", '{"n": 1}', "--wait", "--json", cwd=deep)
            assert (ran.code, ran.json()["result"]) == (0, {"n": 1}), ran.err
            assert server.stop() == 0
        finally:
            server.kill()
        listed = tako_cmd("runs", "--json", cwd=deep)  # down: read from APP/.tako's runs.db
        assert listed.code == 0, listed.err
        assert [r["workflow"] for r in listed.json()] == ["echo"]
        elsewhere = tako_cmd("runs", cwd=root)  # not inside the app: nothing to find
        assert elsewhere.code == 3
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_run_interrupted_by_a_dead_supervisor_reads_pending_not_running(tmp_path: Path) -> None:
    blocked = """
        import os, time
        from tako import Step, workflow

        def block(mark):
            open(mark, "w").close()
            time.sleep(60)

        @workflow
        async def blocked(payload, step: Step):
            await step.run("block", lambda: block(payload["mark"]))
    """
    app = make_app(tmp_path / "killed", {"blocked.py": blocked})
    data_dir = short_data_dir()
    server = DevServer(app, data_dir)
    try:
        mark = tmp_path / "in-step"
        run_id = server.client().start("blocked", {"mark": str(mark)})
        server.wait_for(mark.exists, what="the step to start")
        server.kill()  # kill -9: the store still says running
        shown = server.tako("runs", "show", run_id, "--json")
        assert (shown.code, shown.json()["status"]) == (0, "pending"), shown.err
        assert server.tako("runs", "--status", "running", "--json").json() == []
        pending = server.tako("runs", "--status", "pending", "--json").json()
        assert [r["run_id"] for r in pending] == [run_id]
        status = server.tako("status", "--json").json()
        assert status["runs"] == {"pending": 1}
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
