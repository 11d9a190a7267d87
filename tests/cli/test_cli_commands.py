"""Every client command against a real `tako dev`: JSON shapes, exit codes, payload sources.

One supervisor serves the whole module (starting one costs a second); each
test uses its own run ids or events, so the tests do not depend on order.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import (
    ISO_UTC,
    RUN_EXTRAS,
    RUN_KEYS,
    STEP_EXTRAS,
    STEP_KEYS,
    DevServer,
    make_app,
    short_data_dir,
    tako_cmd,
)

SHOP = """
    from tako import Step, workflow

    @workflow("fulfill-order", retries=1)
    async def fulfill_order(payload: dict, step: Step) -> dict:
        order = await step.run("load-order", lambda: {"id": payload["order_id"]})
        decision = await step.wait_for(f"approval:order-{order['id']}", timeout="1h")
        if decision is None:
            step.bail("approval timed out")
        await step.sleep("cool-down", "10ms")
        return {"shipped": order["id"], "by": decision["by"]}

    @workflow(retries=0)
    async def echo(payload, step: Step):
        return await step.run("echo", lambda: payload)

    @workflow(retries=0, timeout="1h")
    async def explode(payload, step: Step):
        await step.run("boom", lambda: 1 / 0)
"""
BROKEN = "x = 1\ndef broken(:\n    pass\n"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    app = make_app(tmp_path_factory.mktemp("cli") / "shop", {"shop.py": SHOP, "broken.py": BROKEN})
    data_dir = short_data_dir()
    server = DevServer(app, data_dir)
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def assert_run_object(run: dict[str, object], *, steps: bool) -> None:
    keys = set(run)
    assert keys >= RUN_KEYS, RUN_KEYS - keys
    assert keys - RUN_KEYS <= RUN_EXTRAS | ({"steps"} if steps else set())
    assert ("steps" in keys) == steps
    for field in ("created_at", "updated_at"):
        assert ISO_UTC.match(str(run[field])), run[field]
    for step in run.get("steps") or []:  # type: ignore[attr-defined]
        assert STEP_KEYS <= set(step) <= STEP_KEYS | STEP_EXTRAS
        assert ISO_UTC.match(step["started_at"])


def test_run_prints_the_start_reply_and_dedups_on_id(shop: DevServer) -> None:
    first = shop.tako("run", "echo", '{"n": 1}', "--id", "dedup-1", "--json")
    assert first.code == 0, first.err
    assert first.json() == {"run_id": "dedup-1", "status": "pending", "deduplicated": False}
    again = shop.tako("run", "echo", '{"n": 1}', "--id", "dedup-1", "--json")
    assert again.json()["deduplicated"] is True
    human = shop.tako("run", "echo", "--id", "dedup-1")
    assert human.code == 0 and "already exists" in human.out


def test_run_wait_prints_the_result_and_the_run_object(shop: DevServer) -> None:
    plain = shop.tako("run", "echo", '{"a": [1, 2]}', "--wait")
    assert plain.code == 0, plain.err
    assert plain.json() == {"a": [1, 2]}
    as_json = shop.tako("run", "echo", '"hi"', "--wait", "--json")
    run = as_json.json()
    assert_run_object(run, steps=True)
    assert (run["status"], run["result"]) == ("completed", "hi")
    assert [s["key"] for s in run["steps"]] == ["echo"]


def test_run_wait_of_a_failing_run_exits_1_with_the_error(shop: DevServer) -> None:
    result = shop.tako("run", "explode", "--wait", "--json")
    assert result.code == 1
    assert result.json()["status"] == "failed"
    assert "ZeroDivisionError" in result.err and "failed" in result.err


def test_unknown_workflow_is_refused_with_exit_1(shop: DevServer) -> None:
    result = shop.tako("run", "no-such-flow", "{}")
    assert result.code == 1
    assert "no-such-flow" in result.err and "fulfill-order" in result.err


def test_payload_from_a_file_and_from_stdin(shop: DevServer, tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_text('{\n  "order_id": 7,\n  "note": "ünïcode"\n}\n')
    from_file = shop.tako("run", "echo", f"@{path}", "--wait")
    assert from_file.json() == {"order_id": 7, "note": "ünïcode"}
    from_stdin = shop.tako("run", "echo", "-", "--wait", stdin='[1, {"b": null}]')
    assert from_stdin.json() == [1, {"b": None}]


def test_signal_wakes_a_waiting_run_and_runs_show_draws_it(shop: DevServer) -> None:
    shop.tako("run", "fulfill-order", '{"order_id": 42}', "--id", "order-42")
    waiting = shop.wait_status("order-42", "waiting")
    assert waiting["waiting_for"] == "approval:order-42"
    shown = shop.tako("runs", "show", "order-42")
    assert "waits for" in shown.out and "approval:order-42" in shown.out
    assert "├ wait" in shown.out and "└ waiting for" in shown.out
    sent = shop.tako("signal", "approval:order-42", '{"by": "u-7"}', "--json")
    assert sent.json() == {"delivered": 1, "kept": False}
    shop.wait_status("order-42", "completed")
    run = shop.tako("runs", "show", "order-42", "--json").json()
    assert_run_object(run, steps=True)
    assert run["result"] == {"shipped": 42, "by": "u-7"}
    assert [(s["key"], s["kind"]) for s in run["steps"]] == [
        ("load-order", "run"),
        ("approval:order-42", "wait"),
        ("cool-down", "sleep"),
    ]
    tree = shop.tako("runs", "show", "order-42").out
    assert '◄ signal "approval:order-42" received' in tree
    assert '└ completed → {"shipped": 42, "by": "u-7"}' in tree


def test_a_signal_nobody_waits_for_is_kept(shop: DevServer) -> None:
    sent = shop.tako("signal", "nobody-waits", "--ttl", "1m", "--json")
    assert sent.code == 0, sent.err
    assert sent.json() == {"delivered": 0, "kept": True}
    assert "kept" in shop.tako("signal", "nobody-waits-2").out


def test_runs_lists_newest_first_without_steps_and_filters(shop: DevServer) -> None:
    for n in range(3):
        shop.tako("run", "echo", str(n), "--id", f"list-{n}", "--wait")
    runs = shop.tako("runs", "--workflow", "echo", "--json").json()
    assert isinstance(runs, list) and runs
    for run in runs:
        assert_run_object(run, steps=False)
        assert run["workflow"] == "echo"
    ids = [r["run_id"] for r in runs if r["run_id"].startswith("list-")]
    assert ids == ["list-2", "list-1", "list-0"]
    limited = shop.tako("runs", "--workflow", "echo", "--limit", "1", "--json").json()
    assert len(limited) == 1
    shop.tako("run", "explode", "--id", "list-failed", "--wait")
    failed = shop.tako("runs", "--status", "failed", "--json").json()
    assert "list-failed" in [r["run_id"] for r in failed]
    assert all(r["status"] == "failed" for r in failed)
    table = shop.tako("runs", "--workflow", "echo").out
    assert table.splitlines()[0].split()[:3] == ["RUN", "ID", "WORKFLOW"]
    assert "list-2" in table


def test_cancel_and_retry(shop: DevServer) -> None:
    shop.tako("run", "fulfill-order", '{"order_id": 9}', "--id", "order-9")
    shop.wait_status("order-9", "waiting")
    cancelled = shop.tako("runs", "cancel", "order-9", "--json")
    assert cancelled.code == 0, cancelled.err
    run = cancelled.json()
    assert_run_object(run, steps=True)
    assert run["status"] == "cancelled"
    again = shop.tako("runs", "cancel", "order-9")
    assert again.code == 1 and "cancelled" in again.err
    retried = shop.tako("runs", "retry", "order-9", "--json").json()
    assert retried["status"] == "pending"
    shop.wait_status("order-9", "waiting")
    assert "cancelled" in shop.tako("runs", "cancel", "order-9").out


def test_runs_show_of_an_unknown_run_exits_1(shop: DevServer) -> None:
    result = shop.tako("runs", "show", "no-such-run")
    assert result.code == 1 and "no-such-run" in result.err


def test_status_reports_a_running_supervisor(shop: DevServer) -> None:
    result = shop.tako("status", "--json")
    assert result.code == 0, result.err
    status = result.json()
    assert {"supervisor", "pid", "workers", "runs", "next_wake_at"} <= set(status)
    assert status["supervisor"] == "running" and status["pid"] == shop.pid
    assert isinstance(status["workers"], int) and isinstance(status["runs"], dict)
    assert "running (pid" in shop.tako("status").out


def test_workflows_lists_definitions_and_broken_files(shop: DevServer) -> None:
    registry = shop.tako("workflows", "--json").json()
    assert set(registry) == {"workflows", "errors"}
    by_name = {w["name"]: w for w in registry["workflows"]}
    assert set(by_name) == {"fulfill-order", "echo", "explode"}
    assert by_name["explode"] == {
        "name": "explode",
        "file": "workflows/shop.py",
        "retries": 0,
        "timeout": 3600.0,
    }
    assert registry["errors"] == [
        {"file": "workflows/broken.py", "line": 2, "message": registry["errors"][0]["message"]}
    ]
    text = shop.tako("workflows").out
    assert "workflows/broken.py:2" in text and "fulfill-order" in text


def test_global_options_before_or_after_the_command(shop: DevServer) -> None:
    assert shop.tako("run", "echo", "--id", "global-1", "--wait").code == 0
    before = tako_cmd("--data-dir", shop.data_dir, "runs", "--json", "--limit", "2")
    after = tako_cmd("runs", "--json", "--limit", "2", "--data-dir", shop.data_dir)
    nested = tako_cmd("--data-dir", shop.data_dir, "runs", "show", "global-1", "--json")
    assert before.code == after.code == nested.code == 0, (before.err, nested.err)
    assert before.json() == after.json()
    assert nested.json()["run_id"] == "global-1"
    by_socket = tako_cmd("status", "--json", "--socket", shop.socket)
    assert by_socket.json()["pid"] == shop.pid
    socket_first = tako_cmd("--socket", shop.socket, "status", "--json")
    assert socket_first.json()["pid"] == shop.pid


def test_a_second_tako_dev_is_refused_naming_the_pid(shop: DevServer) -> None:
    second = tako_cmd("dev", shop.app_dir, "--data-dir", shop.data_dir, timeout=20)
    assert second.code == 1
    assert f"pid {shop.pid}" in second.err and "already running" in second.err
    assert shop.proc.poll() is None  # the first one is unharmed


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "echo", '{"a": 1,}'], "line 1, column 9"),
        (["run", "echo", "--delay", "5 parsecs"], "invalid duration"),
        (["signal", "ev", "--ttl", "-3s"], "invalid duration"),
        (["run", "echo", "--id", "has space"], "not a run id"),
        (["runs", "show", "x" * 129], "not a run id"),
        (["runs", "--no-such-option"], "No such option"),
        (["runs", "--status", "asleep"], "asleep"),
        (["signal"], "Missing argument"),
    ],
)
def test_command_line_errors_exit_2_before_sending(
    shop: DevServer, args: list[str], needle: str
) -> None:
    result = shop.tako(*args)
    assert result.code == 2, result
    assert needle in result.err
