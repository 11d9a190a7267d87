"""The renderers are pure: fixed runs, a fixed clock, UTC, no terminal."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest

from tako.cli.events import EventFormatter, banner, hints
from tako.cli.render import render_run, render_runs, render_status, render_workflows
from tako.cli.text import duration_text, local_time, preview, spec_duration

NOW = datetime(2026, 11, 21, 5, 45, tzinfo=UTC)


def step(key: str, kind: str, status: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": key,
        "name": key.split("#")[0],
        "kind": kind,
        "status": status,
        "result": None,
        "error": None,
        "attempts": 1,
        "started_at": "2026-11-21T05:42:32.118Z",
        "finished_at": "2026-11-21T05:42:32.131Z",
        "wake_at": None,
    }
    out.update(fields)
    return out


def run(status: str, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": "r_01a1fca0b1400e162e6e",
        "workflow": "fulfill-order",
        "status": status,
        "payload": {"order_id": 42},
        "result": None,
        "error": None,
        "traceback": None,
        "attempts": 1,
        "max_attempts": 5,
        "created_at": "2026-11-21T05:42:32.000Z",
        "updated_at": "2026-11-21T05:42:34.120Z",
        "wake_at": None,
        "waiting_for": None,
        "cancel_requested": False,
        "steps": steps,
    }
    out.update(fields)
    return out


LOADED = step("load-order", "run", "completed", result={"id": 42, "total": 1200})
CHARGED = step(
    "charge",
    "run",
    "completed",
    result="ch_3Q8xk2",
    attempts=2,
    started_at="2026-11-21T05:42:32.133Z",
    finished_at="2026-11-21T05:42:34.114Z",
)


def test_a_waiting_run_is_drawn_as_a_tree() -> None:
    waiting = run(
        "waiting",
        [
            LOADED,
            CHARGED,
            step(
                "approval:order-42",
                "wait",
                "waiting",
                started_at="2026-11-21T05:42:34.120Z",
                finished_at=None,
                wake_at="2026-11-28T05:42:34.120Z",
            ),
        ],
        wake_at="2026-11-28T05:42:34.120Z",
        waiting_for="approval:order-42",
    )
    assert render_run(waiting, now=NOW, tz=UTC) == textwrap.dedent(
        """\
        run        r_01a1fca0b1400e162e6e
        workflow   fulfill-order
        status     waiting
        waits for  "approval:order-42" until Nov 28 05:42 (in 6d 23h)
        attempts   1 of 5
        created    05:42:32 · updated 05:42:34
        payload    {"order_id": 42}

        ┌ started 05:42:32 with {"order_id": 42}
        ├ run   load-order         completed  13 ms  → {"id": 42, "total": 1200}
        ├ run   charge             completed  1.98 s  2 attempts  → "ch_3Q8xk2"
        ├ wait  approval:order-42  waiting    until Nov 28 05:42 (in 6d 23h)
        │ run parks (no CPU burn) for up to 7d
        └ waiting for "approval:order-42" until Nov 28 05:42 (in 6d 23h)"""
    )


def test_a_completed_run_shows_what_woke_each_wait() -> None:
    done = run(
        "completed",
        [
            LOADED,
            step("approval:order-42", "wait", "completed", result={"approved": True}),
            step("second", "wait", "completed", result=None),
            step("cool-down", "sleep", "completed", finished_at="2026-11-21T05:52:32.118Z"),
        ],
        result={"shipped": 42},
    )
    text = render_run(done, now=NOW, tz=UTC)
    assert '◄ signal "approval:order-42" received → {"approved": true}' in text
    assert "◄ timed out" in text
    assert "├ sleep cool-down          completed  10m" in text
    assert text.endswith('└ completed → {"shipped": 42}')


def test_a_parents_children_are_drawn_under_its_steps() -> None:
    child, audit = "r_01a1fca0b1400e162e6e.price", "r_01a1fca0b1400e162e6e.audit"
    parent = run(
        "completed",
        [
            step("price", "invoke", "completed", result={
                "run_id": child, "status": "completed", "result": 7, "error": None,
            }),
            step("audit", "child", "completed", result=audit),
        ],
        children=[
            {"run_id": child, "workflow": "price", "status": "completed"},
            {"run_id": audit, "workflow": "audit", "status": "running"},
        ],
        result={"total": 7},
    )  # fmt: skip
    text = render_run(parent, now=NOW, tz=UTC)
    assert f"→ run {child} completed  → 7" in text
    assert f"→ started run {audit}" in text
    assert "children (2):" in text
    assert f"  ↳ {child}  price  completed" in text
    assert f"  ↳ {audit}  audit  running" in text
    kid = render_run(
        run("running", [], run_id=child, parent_run_id="r_01a1fca0b1400e162e6e"), now=NOW
    )
    assert "parent    run r_01a1fca0b1400e162e6e started it" in kid


def test_a_failed_run_shows_the_error_and_traceback() -> None:
    failed = run(
        "failed",
        [step("charge", "run", "failed", error="CardDeclined: no funds", attempts=3)],
        error="StepFailed: step 'charge' failed",
        traceback="Traceback (most recent call last):\n  ...\nCardDeclined: no funds\n",
        attempts=5,
    )
    text = render_run(failed, now=NOW, tz=UTC)
    assert "├ run   charge  failed     13 ms  3 attempts  CardDeclined: no funds" in text
    assert "└ failed: StepFailed: step 'charge' failed" in text
    assert "error     StepFailed" in text
    assert text.endswith("  CardDeclined: no funds")


@pytest.mark.parametrize(
    ("status", "steps", "fields", "last"),
    [
        (
            "sleeping",
            [
                step(
                    "cool-down",
                    "sleep",
                    "sleeping",
                    finished_at=None,
                    wake_at="2026-11-21T05:55:00Z",
                )
            ],
            {"wake_at": "2026-11-21T05:55:00Z"},
            "└ sleeping until 05:55:00 (in 10m)",
        ),
        (
            "sleeping",
            [
                step(
                    "charge",
                    "run",
                    "running",
                    finished_at=None,
                    error="Timeout",
                    wake_at="2026-11-21T05:45:02Z",
                )
            ],
            {"wake_at": "2026-11-21T05:45:02Z"},
            "└ sleeping until 05:45:02 (in 2.00 s)",
        ),
        ("cancelled", [], {"error": "customer withdrew"}, "└ cancelled: customer withdrew"),
        (
            "pending",
            [],
            {"error": "boom", "wake_at": "2026-11-21T05:45:04Z", "attempts": 2},
            "└ retrying at 05:45:04 (in 4.00 s) after: boom",
        ),
        ("pending", [], {"wake_at": "2026-11-22T06:00:00Z"}, "└ pending: scheduled for Nov 22"),
        ("pending", [], {}, "└ pending: queued for a worker"),
        ("running", [], {"cancel_requested": True}, "└ running (attempt 1), cancel requested"),
        ("waiting", [], {"waiting_for": "go"}, '└ waiting for "go" (no timeout)'),
    ],
)
def test_the_last_line_says_where_the_run_is(
    status: str, steps: list[dict[str, Any]], fields: dict[str, Any], last: str
) -> None:
    text = render_run(run(status, steps, **fields), now=NOW, tz=UTC)
    assert text.splitlines()[-1].startswith(last), text


def test_a_step_in_retry_backoff_says_when_it_tries_again() -> None:
    backoff = step(
        "charge",
        "run",
        "running",
        finished_at=None,
        error="Timeout",
        wake_at="2026-11-21T05:45:02Z",
    )
    text = render_run(run("sleeping", [backoff]), now=NOW, tz=UTC)
    assert "├ run   charge  retrying   Timeout" in text
    assert "│ next attempt at 05:45:02 (in 2.00 s)" in text


def test_colour_only_when_asked() -> None:
    plain = render_run(run("completed", [LOADED]), now=NOW, tz=UTC)
    coloured = render_run(run("completed", [LOADED]), now=NOW, tz=UTC, color=True)
    assert "\x1b[" not in plain and "\x1b[" in coloured
    assert click.unstyle(coloured) == plain


def test_runs_table() -> None:
    runs = [
        run("waiting", [], waiting_for="approval:order-42", wake_at="2026-11-28T05:42:34.120Z"),
        run("completed", [], run_id="order-7", result={"shipped": 7}),
        run("failed", [], run_id="order-8", error="ValueError: bad\nmore"),
    ]
    lines = render_runs(runs, now=NOW, tz=UTC).splitlines()
    assert lines[0].split() == ["RUN", "ID", "WORKFLOW", "STATUS", "ATTEMPTS", "CREATED", "INFO"]
    assert lines[1].split()[:3] == ["r_01a1fca0b1400e162e6e", "fulfill-order", "waiting"]
    assert lines[1].endswith('for "approval:order-42" until Nov 28 05:42')
    assert lines[2].endswith('→ {"shipped": 7}')
    assert lines[3].endswith("ValueError: bad…")
    assert all(line == line.rstrip() for line in lines)
    assert render_runs([], now=NOW) == "no runs"


def test_status_and_workflows() -> None:
    up = render_status(
        {
            "supervisor": "running",
            "pid": 48213,
            "workers": 1,
            "runs": {"waiting": 3, "completed": 12},
            "next_wake_at": "2026-11-21T05:52:10.000Z",
        },
        now=NOW,
        tz=UTC,
    )
    assert "supervisor  running (pid 48213)" in up
    assert "runs        completed 12 · waiting 3" in up
    assert "next wake   05:52:10 (in 7m 10s)" in up
    registry = {
        "workflows": [
            {"name": "fulfill-order", "file": "workflows/orders.py", "retries": 4, "timeout": None},
            {"name": "report", "file": "workflows/r.py", "retries": 3, "timeout": 5400.0},
        ],
        "errors": [{"file": "workflows/broken.py", "line": 3, "message": "SyntaxError: oops"}],
    }
    text = render_workflows(registry)
    assert "fulfill-order  workflows/orders.py  retries 4  no timeout" in text
    assert "report         workflows/r.py       retries 3  timeout 1h30m" in text
    assert "failed to load (1)\n  workflows/broken.py:3  SyntaxError: oops" in text


def test_dev_banner_and_hints() -> None:
    registry = {"workflows": [{"name": "greet", "file": "w.py", "retries": 0}], "errors": []}
    here = Path("/home/ana/shop")
    local = hints(
        registry,
        data_dir=here / ".tako",
        socket=here / ".tako/tako.sock",
        cwd=here,
        default_socket=here / ".tako/tako.sock",
    )
    assert local == ["tako run greet '{}'", "tako runs", "tako status"]
    far = hints(
        registry,
        data_dir=Path("/tmp/d"),
        socket=Path("/tmp/d/tako.sock"),
        cwd=here,
        default_socket=Path("/tmp/d/tako.sock"),
    )
    assert far[0] == "tako run greet '{}' --data-dir /tmp/d"
    text = banner(
        app="shop",
        app_dir=here,
        data_dir=here / ".tako",
        socket=here / ".tako/tako.sock",
        database=here / ".tako/apps/shop/runs.db",
        registry=registry,
        hints=local,
    )
    assert text.startswith("tako dev · app shop\n  app dir   /home/ana/shop\n")
    assert "  database  /home/ana/shop/.tako/apps/shop/runs.db" in text
    assert "next, in another terminal:\n  tako run greet '{}'" in text


def test_the_run_hint_carries_the_example_payload_and_file_output_is_labelled() -> None:
    example = {"order_id": "...", "note": "it's"}
    registry = {"workflows": [{"name": "order", "file": "w.py", "payload_example": example}]}
    here = Path("/home/ana/shop")
    hint = hints(
        registry,
        data_dir=here / ".tako",
        socket=here / ".tako/tako.sock",
        cwd=here,
        default_socket=here / ".tako/tako.sock",
    )[0]
    assert hint == """tako run order '{"order_id":"...","note":"it'"'"'s"}'"""
    line = EventFormatter(tz=UTC).line(
        "output", {"file": "workflows/a.py", "text": "loading\nready\n"}, NOW
    )
    assert line == "05:45:00  workflows/a.py │ loading\n          workflows/a.py │ ready"


def test_event_lines() -> None:
    fmt = EventFormatter(tz=UTC)
    ms = int((NOW + timedelta(minutes=10)).timestamp() * 1000)
    lines = [
        fmt.line("started", {"run_id": "r1", "workflow": "greet"}, NOW),
        fmt.line("step", {"run_id": "r1", "key": "say", "status": "completed", "ms": 13}, NOW),
        fmt.line(
            "step",
            {"run_id": "r1", "key": "pay", "status": "failed", "ms": 2100, "error": "E: x"},
            NOW,
        ),
        fmt.line("parked", {"run_id": "r1", "kind": "sleep", "key": "nap", "wake_at": ms}, NOW),
        fmt.line("parked", {"run_id": "r1", "kind": "wait", "event": "go", "wake_at": None}, NOW),
        fmt.line("woke", {"run_id": "r1", "by": "go"}, NOW),
        fmt.line("retrying", {"run_id": "r1", "wake_at": ms, "error": "E: x"}, NOW),
        fmt.line("completed", {"run_id": "r1", "error": None}, NOW),
        fmt.line("worker_lost", {"reason": "worker crashed: killed by SIGKILL", "runs": 2}, NOW),
        fmt.line("released", {"run_id": "r2", "key": "pay"}, NOW),
        fmt.line("future_event", {"run_id": "r2", "n": 3}, NOW),
    ]
    assert lines == [
        "05:45:00  r1 greet  ▶ started",
        "05:45:00  r1 greet  ✓ step say (13 ms)",
        "05:45:00  r1 greet  ✗ step pay failed after 2.10 s: E: x",
        "05:45:00  r1 greet  ⏸ sleeping until 05:55:00 (nap)",
        '05:45:00  r1 greet  ⏸ waiting for "go" (no timeout)',
        '05:45:00  r1 greet  ◄ woken by signal "go"',
        "05:45:00  r1 greet  ↻ attempt failed: E: x; retrying in 10m",
        "05:45:00  r1 greet  ✔ completed",
        "05:45:00  ⚠ worker crashed: killed by SIGKILL (2 run(s) in flight)",
        "05:45:00  r2 ?  ⏏ paused after step pay: resumes when tako dev starts again",
        "05:45:00  r2 ?  future_event n=3",
    ]
    assert fmt.line("reloaded", {"workflows": 1, "errors": 0}, NOW) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.013, "13 ms"), (1.984, "1.98 s"), (12.34, "12.3 s"), (172, "2m 52s"), (3600, "1h")],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (30, "30s"), (0.5, "500ms"), (604800, "1w"), (1.5, "1.5s")],
)
def test_configured_durations_read_as_written(seconds: float, text: str) -> None:
    assert spec_duration(seconds) == text


def test_times_and_previews() -> None:
    assert local_time("2026-11-21T05:52:10.000Z", NOW, UTC) == "05:52:10"
    assert local_time("2026-12-01T00:00:00Z", NOW, UTC) == "Dec 01 00:00"
    assert local_time("2027-01-02T03:04:00Z", NOW, UTC) == "2027-01-02 03:04"
    assert local_time(None, NOW) == "-"
    assert preview({"a": "x" * 100}, 20) == '{"a": "xxxxxxxxxxxx…'
    assert len(preview({"a": "x" * 100}, 20)) == 20
