"""The `tako` command on PostgreSQL: `--database-url`, `tako db migrate`, and read
commands that read the app's schema while the supervisor is down.

Real processes on a real PostgreSQL (tests/pg.py: skipped locally when it cannot be
reached, failed in CI). Each test's app has a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_harness import OFFLINE_FLOWS, DevServer, clean_env, make_app, short_data_dir, tako_cmd

from tako.takod.storage import redact
from tako.takod.storage.postgres.connection import schema_of
from tako.takod.storage.postgres.schema import migrations
from tests.pg import database_url, drop_app, fresh_app

FLOWS = (
    OFFLINE_FLOWS
    + """
    @workflow(retries=0)
    async def refund(payload, step: Step):
        decision = await step.approval("manager", summary="refund 42", approvers=["alice"])
        return decision.approved
"""
)
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.fixture
def app() -> Iterator[tuple[str, str]]:
    """(database URL, an app name of this test's own); its schema is dropped afterwards."""
    url, name = database_url(), fresh_app()
    try:
        yield url, name
    finally:
        drop_app(url, name)


def tables(url: str, app: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema_of(app),),
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_creates_the_schema_once(app: tuple[str, str], tmp_path: Path) -> None:
    url, name = app
    assert tables(url, name) == set()
    first = tako_cmd("db", "migrate", "--database-url", url, "--app", name, cwd=tmp_path)
    assert first.code == 0, first.err
    latest = len(migrations())
    assert first.out.strip() == f"schema {schema_of(name)}: version 0 -> {latest}"
    assert {"runs", "steps", "approvals", "supervisors", "schema_version"} <= tables(url, name)
    again = tako_cmd("db", "migrate", "--app", name, "--json", cwd=tmp_path, env=env(url))
    assert again.code == 0, again.err
    assert again.json() == {"schema": schema_of(name), "before": latest, "after": latest}
    text = tako_cmd("db", "--database-url", url, "migrate", "--app", name, cwd=tmp_path)
    assert text.out.strip() == f"schema {schema_of(name)}: already at version {latest}"


def test_a_schema_newer_than_the_code_is_refused(app: tuple[str, str], tmp_path: Path) -> None:
    url, name = app
    assert tako_cmd("db", "migrate", "--database-url", url, "--app", name).code == 0
    newer = len(migrations()) + 1
    with psycopg.connect(url) as conn:
        conn.execute(f"INSERT INTO {schema_of(name)}.schema_version VALUES (%s)", (newer,))
    refused = tako_cmd("db", "migrate", "--database-url", url, "--app", name, cwd=tmp_path)
    assert refused.code == 1
    assert f"at version {newer}, newer than this tako understands" in refused.err


def test_migrate_needs_a_reachable_postgresql(tmp_path: Path) -> None:
    database_url()  # the policy of tests/pg.py, though this test needs no database
    none = tako_cmd("db", "migrate", cwd=tmp_path)
    assert none.code == 2 and "--database-url" in none.err and "SQLite" in none.err
    down = tako_cmd("db", "migrate", "--database-url", UNREACHABLE, "--app", "x", cwd=tmp_path)
    assert down.code == 3 and "cannot reach the database at" in down.err
    sqlite = tako_cmd("db", "migrate", "--database-url", "sqlite:///runs.db", cwd=tmp_path)
    assert sqlite.code == 2 and "must be a postgresql:// URL" in sqlite.err


def env(url: str) -> dict[str, str]:
    return clean_env(TAKO_DATABASE_URL=url)


@dataclass
class Stopped:
    """An app served from PostgreSQL by `tako dev --database-url`, then stopped."""

    url: str
    name: str
    app: Path
    data_dir: Path
    waiting_id: str
    while_up: dict[str, Any]

    def tako(self, *args: str | Path, **kwargs: Any) -> Any:
        """The command with the supervisor down: a data dir with no socket, and no runs.db."""
        return tako_cmd(*args, "--data-dir", self.data_dir, **kwargs)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stopped]:
    url, name = database_url(), fresh_app()
    app = make_app(tmp_path_factory.mktemp("pg") / "pgapp", {"flows.py": FLOWS}, name=name)
    data_dir = short_data_dir()
    server = DevServer(app, data_dir, args=("--no-http", "--database-url", url))
    try:
        up: dict[str, Any] = {"log": server.log()}
        assert server.tako("run", "echo", '{"x": 1}', "--wait").code == 0
        waiting_id = server.client().start("approve", {"n": 2})
        server.wait_status(waiting_id, "waiting")
        server.wait_status(server.client().start("refund", None), "waiting")
        up["shown"] = server.tako("runs", "show", waiting_id, "--json").json()
        up["listed"] = server.tako("runs", "--json").json()
        up["approvals"] = server.tako("approvals", "--json").json()
        up["status"] = server.tako("status", "--json").json()
        up["pid"] = server.pid
        assert server.stop() == 0
        yield Stopped(url, name, app, data_dir, waiting_id, up)
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
        drop_app(url, name)


def test_tako_dev_serves_the_app_from_postgresql(stopped: Stopped) -> None:
    where = f"{redact(stopped.url)} (schema {schema_of(stopped.name)})"
    assert f"  database  {where}\n" in stopped.while_up["log"]
    assert not list(stopped.data_dir.glob("apps/*/runs.db"))  # nothing went to SQLite
    status = stopped.while_up["status"]
    assert [s["pid"] for s in status["supervisors"]] == [stopped.while_up["pid"]]
    assert {r["workflow"] for r in stopped.while_up["listed"]} == {"echo", "approve", "refund"}


def test_read_commands_read_postgresql_while_the_supervisor_is_down(stopped: Stopped) -> None:
    url = ("--database-url", stopped.url)
    listed = stopped.tako("runs", "--json", *url, cwd=stopped.app)
    assert listed.code == 0, listed.err
    assert listed.json() == stopped.while_up["listed"]
    assert "supervisor not running; reading postgresql://" in listed.err
    assert schema_of(stopped.name) in listed.err
    shown = stopped.tako("runs", "show", stopped.waiting_id, "--json", *url, cwd=stopped.app)
    assert shown.code == 0, shown.err
    assert shown.json() == stopped.while_up["shown"]
    tree = stopped.tako("runs", "show", stopped.waiting_id, *url, cwd=stopped.app).out
    assert '└ waiting for "go" until' in tree
    approvals = stopped.tako("approvals", "--json", *url, "--app", stopped.name)
    assert approvals.code == 0, approvals.err
    assert approvals.json() == stopped.while_up["approvals"]
    missing = stopped.tako("runs", "show", "nope", *url, cwd=stopped.app)
    assert missing.code == 1 and "nope" in missing.err


def test_status_while_down_counts_runs_and_lists_the_supervisors_alive(stopped: Stopped) -> None:
    status = stopped.tako("status", "--json", "--database-url", stopped.url, cwd=stopped.app)
    assert status.code == 3
    fields = status.json()
    assert fields["supervisor"] == "down"
    assert fields["runs"] == {"completed": 1, "waiting": 2}
    assert fields["supervisors"] == []  # the one stopped left the list
    now = int(time.time() * 1000)
    with psycopg.connect(stopped.url) as conn:  # another host's supervisor, alive
        conn.execute(
            f"INSERT INTO {schema_of(stopped.name)}.supervisors"
            " (host, pid, workers, started_at, heartbeat_at) VALUES ('db-host-2', 4242, 3, %s, %s)",
            (now - 60_000, now),
        )
    try:
        listed = stopped.tako("status", "--json", "--database-url", stopped.url, cwd=stopped.app)
        assert [(s["host"], s["pid"], s["workers"]) for s in listed.json()["supervisors"]] == [
            ("db-host-2", 4242, 3)
        ]
        text = stopped.tako("status", "--database-url", stopped.url, cwd=stopped.app)
        assert "db-host-2 pid 4242" in text.out and "down" in text.out
    finally:
        with psycopg.connect(stopped.url) as conn:
            conn.execute(f"DELETE FROM {schema_of(stopped.name)}.supervisors")


def test_the_flag_beats_the_variable_which_beats_tako_toml(
    stopped: Stopped, tmp_path: Path
) -> None:
    expected = stopped.while_up["listed"]
    by_flag = stopped.tako(
        "runs", "--json", "--database-url", stopped.url, cwd=stopped.app, env=env(UNREACHABLE)
    )
    assert by_flag.code == 0, by_flag.err
    assert by_flag.json() == expected
    by_env = stopped.tako(
        "runs", "--json", "--app", stopped.name, cwd=tmp_path, env=env(stopped.url)
    )
    assert by_env.json() == expected
    unreachable = stopped.tako("runs", "--json", cwd=stopped.app, env=env(UNREACHABLE))
    assert unreachable.code == 3 and "127.0.0.1:1" in unreachable.err
    folder = tmp_path / "here"
    folder.mkdir()
    toml = f'name = "{stopped.name}"\n[storage]\nurl = "{{}}"\n'
    (folder / "tako.toml").write_text(toml.format(stopped.url))
    by_toml = stopped.tako("runs", "--json", cwd=folder)
    assert by_toml.code == 0, by_toml.err
    assert by_toml.json() == expected
    (folder / "tako.toml").write_text(toml.format(UNREACHABLE))
    env_over_toml = stopped.tako("runs", "--json", cwd=folder, env=env(stopped.url))
    assert env_over_toml.json() == expected
    assert stopped.tako("runs", "--json", cwd=folder).code == 3
