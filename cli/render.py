"""What `tako` prints for people: the run timeline, the runs table, status and workflows.

Every function here is pure: it takes the JSON shapes of SPEC §7 (as plain
dicts, exactly what `--json` prints), the current time and whether to
colour, and returns text. The commands only fetch and print, and the tests
render fixed runs without a supervisor, a clock or a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from cli.text import (
    Paint,
    between,
    duration_text,
    local_time,
    preview,
    spec_duration,
    table,
    truncate,
    when_text,
)

Run = Mapping[str, Any]
PARKED = "run parks (no CPU burn)"


def render_run(run: Run, *, now: datetime, color: bool = False, tz: tzinfo | None = None) -> str:
    """`tako runs show`: a header, then the run's steps as a tree, then its traceback."""
    paint = Paint(color)
    lines = _header(run, now, paint, tz)
    lines.append("")
    lines += _timeline(run, now, paint, tz)
    if run["status"] == "failed" and run.get("traceback"):
        lines += ["", paint.dim("traceback:")]
        lines += ["  " + line for line in str(run["traceback"]).rstrip().splitlines()]
    return "\n".join(lines)


def _header(run: Run, now: datetime, paint: Paint, tz: tzinfo | None) -> list[str]:
    status = str(run["status"])
    state = paint.status(status)
    if run.get("cancel_requested") and status not in ("cancelled", "completed", "failed"):
        state += paint(" (cancel requested: stops at its next step)", "yellow")
    rows: list[tuple[str, str]] = [
        ("run", paint(str(run["run_id"]), bold=True)),
        ("workflow", str(run["workflow"])),
        ("status", state),
    ]
    if status == "waiting":
        until = run.get("wake_at")
        rows.append(
            (
                "waits for",
                f'"{run.get("waiting_for")}" '
                + (f"until {when_text(until, now, tz)}" if until else "(no timeout)"),
            )
        )
    elif status in ("sleeping", "pending") and run.get("wake_at"):
        rows.append(("wakes", when_text(run["wake_at"], now, tz)))
    attempts = str(run.get("attempts", 1))
    if run.get("max_attempts"):
        attempts += f" of {run['max_attempts']}"
    rows.append(("attempts", attempts))
    rows.append(
        (
            "created",
            f"{local_time(run.get('created_at'), now, tz)}"
            f" · updated {local_time(run.get('updated_at'), now, tz)}",
        )
    )
    rows.append(("payload", preview(run.get("payload"), 80)))
    if run.get("error"):
        colour = "red" if status in ("failed", "pending") else "yellow"
        rows.append(("error", paint(str(run["error"]).strip(), colour)))
    width = max(len(k) for k, _ in rows)
    return [f"{paint.dim(k.ljust(width))}  {v}" for k, v in rows]


def _timeline(run: Run, now: datetime, paint: Paint, tz: tzinfo | None) -> list[str]:
    lines = [
        f"┌ started {local_time(run.get('created_at'), now, tz)}"
        f" with {preview(run.get('payload'), 60)}"
    ]
    steps = run.get("steps") or []
    width = max((len(str(s["key"])) for s in steps), default=0)
    for step in steps:
        lines += _step_lines(step, now, paint, tz, width)
    lines.append(_last_line(run, now, paint, tz))
    return lines


def _step_lines(
    step: Mapping[str, Any], now: datetime, paint: Paint, tz: tzinfo | None, width: int
) -> list[str]:
    """One tree line for the step, then what it waited for (◄) or is parked on (│)."""
    kind, status, key = str(step["kind"]), str(step["status"]), str(step["key"])
    took = between(step.get("started_at"), step.get("finished_at"))
    head = f"├ {paint(kind.ljust(5), 'magenta')} {paint(key, bold=True)}{' ' * (width - len(key))}"
    parts = [paint.status(status, status.ljust(9))]
    if took is not None:
        parts.append(duration_text(took))
    if (step.get("attempts") or 1) > 1:
        parts.append(f"{step['attempts']} attempts")
    more: list[str] = []
    wake = step.get("wake_at")
    if status == "completed" and kind == "run":
        parts.append(f"→ {preview(step.get('result'), 50)}")
    elif status == "failed":
        parts.append(paint(truncate(str(step.get("error") or "failed"), 80), "red"))
    elif status == "running" and wake:  # a failed attempt waiting out its backoff
        parts[0] = paint.status("sleeping", "retrying".ljust(9))
        parts.append(paint(truncate(str(step.get("error") or ""), 60), "red"))
        more.append(f"│ next attempt at {when_text(wake, now, tz)}")
    elif status == "running":
        parts.append(f"since {local_time(step.get('started_at'), now, tz)}")
    elif status == "sleeping":
        parts.append(f"until {when_text(wake, now, tz)}")
        more.append(f"│ {PARKED} until {local_time(wake, now, tz)}")
    elif status == "waiting":
        if wake:
            parts.append(f"until {when_text(wake, now, tz)}")
            remaining = between(step.get("started_at"), wake)
            span = f"for up to {duration_text(remaining)}" if remaining else "until it times out"
            more.append(f"│ {PARKED} {span}")
        else:
            parts.append("no timeout")
            more.append(f"│ {PARKED} until a signal arrives")
    if status == "completed" and kind == "wait":
        result = step.get("result")
        if result is None:
            more.append(paint("◄ timed out", "yellow"))
        else:
            more.append(f'◄ signal "{step["name"]}" received → {preview(result, 50)}')
    elif status == "completed" and kind == "approval":
        more.append(f"◄ decided → {preview(step.get('result'), 50)}")
    return [f"{head}  {'  '.join(parts)}".rstrip(), *more]


def _last_line(run: Run, now: datetime, paint: Paint, tz: tzinfo | None) -> str:
    status = str(run["status"])
    error = truncate(str(run.get("error") or ""), 100)
    wake = run.get("wake_at")
    if status == "completed":
        return f"└ {paint.status(status)} → {preview(run.get('result'), 70)}"
    if status == "failed":
        return f"└ {paint.status(status)}: {paint(error, 'red')}"
    if status == "cancelled":
        return f"└ {paint.status(status)}: {error or 'cancelled'}"
    if status == "waiting":
        until = f"until {when_text(wake, now, tz)}" if wake else "(no timeout)"
        return f'└ {paint.status(status, "waiting")} for "{run.get("waiting_for")}" {until}'
    if status == "sleeping":
        return f"└ {paint.status(status)} until {when_text(wake, now, tz)}"
    if status == "running":
        text = f"└ {paint.status(status)} (attempt {run.get('attempts', 1)})"
        if run.get("cancel_requested"):
            text += paint(", cancel requested", "yellow")
        return text
    if error and wake:
        return f"└ {paint.status(status, 'retrying')} at {when_text(wake, now, tz)} after: {error}"
    if wake:
        return f"└ {paint.status(status)}: scheduled for {when_text(wake, now, tz)}"
    return f"└ {paint.status(status)}: queued for a worker"


def run_info(run: Run, now: datetime, tz: tzinfo | None = None) -> str:
    """The one-line summary of the runs table's last column: what the run is at."""
    status, wake = str(run["status"]), run.get("wake_at")
    if status == "waiting":
        until = f" until {local_time(wake, now, tz)}" if wake else ""
        return f'for "{run.get("waiting_for")}"{until}'
    if status in ("failed", "cancelled"):
        return truncate(str(run.get("error") or ""), 60)
    if status == "completed":
        return "→ " + preview(run.get("result"), 50)
    if wake:
        return f"until {local_time(wake, now, tz)}"
    if status == "running" and run.get("cancel_requested"):
        return "cancel requested"
    return ""


def render_runs(
    runs: Sequence[Run], *, now: datetime, color: bool = False, tz: tzinfo | None = None
) -> str:
    """`tako runs`: a table, newest first (the order takod returns)."""
    if not runs:
        return "no runs"
    header = ["RUN ID", "WORKFLOW", "STATUS", "ATTEMPTS", "CREATED", "INFO"]
    rows = [
        [
            str(r["run_id"]),
            str(r["workflow"]),
            str(r["status"]),
            str(r.get("attempts", "")),
            local_time(r.get("created_at"), now, tz),
            run_info(r, now, tz),
        ]
        for r in runs
    ]
    return table(rows, header, Paint(color), status_col=2)


def render_status(
    status: Mapping[str, Any], *, now: datetime, color: bool = False, tz: tzinfo | None = None
) -> str:
    """`tako status`: supervisor, workers, runs per status, next wake-up."""
    paint = Paint(color)
    up = status.get("supervisor") == "running"
    state = (
        paint("running", "green", bold=True) + f" (pid {status.get('pid')})"
        if up
        else paint("down", "red", bold=True)
    )
    counts = status.get("runs") or {}
    runs = " · ".join(f"{paint.status(k, k)} {n}" for k, n in sorted(counts.items())) or "none"
    rows = [("supervisor", state)]
    if status.get("app"):
        rows.append(("app", str(status["app"])))
    rows += [
        ("workers", str(status.get("workers", 0))),
        ("runs", runs),
        ("next wake", when_text(status.get("next_wake_at"), now, tz)),
    ]
    if status.get("database"):
        rows.append(("database", str(status["database"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{paint.dim(k.ljust(width))}  {v}" for k, v in rows)


def render_workflows(registry: Mapping[str, Any], *, color: bool = False) -> str:
    """`tako workflows` and the banner of `tako dev`: workflows, then files that failed."""
    paint = Paint(color)
    workflows = registry.get("workflows") or []
    errors = registry.get("errors") or []
    lines = [paint(f"workflows ({len(workflows)})", bold=True)]
    if workflows:
        rows = [
            [
                str(w["name"]),
                str(w["file"]),
                f"retries {w['retries']}",
                "no timeout"
                if w.get("timeout") is None
                else f"timeout {spec_duration(float(w['timeout']))}",
            ]
            for w in workflows
        ]
        body = table(rows, ["NAME", "FILE", "RETRIES", "TIMEOUT"], paint)
        lines += ["  " + line for line in body.splitlines()[1:]]
    else:
        lines.append("  none found: add `@workflow` functions under workflows/")
    if errors:
        lines.append(paint(f"failed to load ({len(errors)})", "red", bold=True))
        for e in errors:
            where = f"{e['file']}:{e['line']}" if e.get("line") is not None else str(e["file"])
            lines.append(f"  {paint(where, 'red')}  {e['message']}")
    return "\n".join(lines)


def _timeout(seconds: float | None) -> str:
    return "no timeout" if seconds is None else f"timeout {spec_duration(float(seconds))}"
