"""What `tako` prints for people: the run timeline, the runs table, status and
workflows (approval requests: render_approvals.py).

Every function here is pure: it takes the JSON shapes of `--json` (as plain
dicts, exactly what `--json` prints), the current time and whether to
colour, and returns text. The commands only fetch and print, and the tests
render fixed runs without a supervisor, a clock or a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from tako._records import FINISHED
from tako.cli.options import plain
from tako.cli.render_approvals import approvers_text, decision_text
from tako.cli.text import (
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
Approval = Mapping[str, Any]
PARKED = "run parks (no CPU burn)"
APPROVAL_PREFIX = "approval:"  # a run's `waiting_for` while it waits for an approval


def render_run(
    run: Run,
    *,
    now: datetime,
    color: bool = False,
    tz: tzinfo | None = None,
    approvals: Mapping[str, Approval] | None = None,
) -> str:
    """`tako runs show`: a header, then the run's steps as a tree, then its traceback.

    `approvals` are the approval objects of the run's waiting approval steps, by step
    key: they add who may decide and the deadline, which the run object does not hold."""
    paint = Paint(color)
    approvals = approvals or {}
    lines = _header(run, now, paint, tz, approvals)
    lines.append("")
    lines += _timeline(run, now, paint, tz, approvals)
    lines += _children(run, paint)
    if run["status"] == "failed" and run.get("traceback"):
        lines += ["", paint.dim("traceback:")]
        lines += ["  " + line for line in str(run["traceback"]).rstrip().splitlines()]
    return "\n".join(lines)


def _children(run: Run, paint: Paint) -> list[str]:
    """The runs this one started (`step.invoke`, `step.start_child`), under its steps."""
    children = run.get("children") or []
    if not children:
        return []
    width = max(len(c["run_id"]) for c in children)
    lines = ["", paint.dim(f"children ({len(children)}):")]
    for c in children:
        status = paint.status(c["status"], c["status"])
        lines.append(f"  ↳ {c['run_id'].ljust(width)}  {c['workflow']}  {status}")
    return lines


def _header(
    run: Run, now: datetime, paint: Paint, tz: tzinfo | None, approvals: Mapping[str, Approval]
) -> list[str]:
    status = str(run["status"])
    state = paint.status(status)
    if run.get("cancel_requested") and status not in FINISHED:
        state += paint(" (cancel requested: stops at its next step)", "yellow")
    rows: list[tuple[str, str]] = [
        ("run", paint(str(run["run_id"]), bold=True)),
        ("workflow", str(run["workflow"])),
        ("status", state),
    ]
    if run.get("parent_run_id"):
        rows.append(("parent", f"run {run['parent_run_id']} started it"))
    approval_key = _approval_key(run)
    if status == "waiting" and approval_key is not None:
        rows.append(("waits for", _awaited_approval(run, approval_key, approvals, now, tz)))
    elif status == "waiting":
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


def _timeline(
    run: Run, now: datetime, paint: Paint, tz: tzinfo | None, approvals: Mapping[str, Approval]
) -> list[str]:
    lines = [
        f"┌ started {local_time(run.get('created_at'), now, tz)}"
        f" with {preview(run.get('payload'), 60)}"
    ]
    steps = run.get("steps") or []
    width = max((len(str(s["key"])) for s in steps), default=0)
    kinds = max([5, *(len(str(s["kind"])) for s in steps)])  # "approval" widens the column
    for step in steps:
        if step["kind"] == "approval":
            approval = approvals.get(str(step["key"]))
            lines += _approval_step_lines(run, step, approval, now, paint, tz, (kinds, width))
        else:
            lines += _step_lines(step, now, paint, tz, (kinds, width))
    lines.append(_last_line(run, now, paint, tz, approvals))
    return lines


def _step_head(step: Mapping[str, Any], paint: Paint, widths: tuple[int, int]) -> str:
    kind, key = str(step["kind"]), str(step["key"])
    kinds, width = widths
    return (
        f"├ {paint(kind.ljust(kinds), 'magenta')} {paint(key, bold=True)}{' ' * (width - len(key))}"
    )


def _step_lines(
    step: Mapping[str, Any],
    now: datetime,
    paint: Paint,
    tz: tzinfo | None,
    widths: tuple[int, int],
) -> list[str]:
    """One tree line for the step, then what it waited for (◄) or is parked on (│)."""
    kind, status = str(step["kind"]), str(step["status"])
    took = between(step.get("started_at"), step.get("finished_at"))
    head = _step_head(step, paint, widths)
    parts = [paint.status(status, status.ljust(9))]
    if took is not None:
        parts.append(duration_text(took))
    if (step.get("attempts") or 1) > 1:
        parts.append(f"{step['attempts']} attempts")
    more: list[str] = []
    wake = step.get("wake_at")
    if status == "completed" and kind == "run":
        parts.append(f"→ {preview(step.get('result'), 50)}")
    elif status == "completed" and kind == "child":
        parts.append(f"→ started run {step.get('result')}")
    elif status == "completed" and kind == "invoke":
        child = step.get("result") or {}
        parts.append(f"→ run {child.get('run_id')} {paint.status(child.get('status', ''))}")
        if child.get("status") == "completed":
            parts.append(f"→ {preview(child.get('result'), 40)}")
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
    return [f"{head}  {'  '.join(parts)}".rstrip(), *more]


def _approval_step_lines(
    run: Run,
    step: Mapping[str, Any],
    approval: Approval | None,
    now: datetime,
    paint: Paint,
    tz: tzinfo | None,
    widths: tuple[int, int],
) -> list[str]:
    """`├ approval manager  waiting  (key r1:manager, approvers alice, bob; until ...)`,
    then how it was decided (◄) or what the run is parked on (│)."""
    status = str(step["status"])
    key = f"{run['run_id']}:{step['key']}"
    parts = [paint.status(status, status.ljust(9))]
    took = between(step.get("started_at"), step.get("finished_at"))
    more: list[str] = []
    if status == "completed":
        if took is not None:
            parts.append(duration_text(took))
        decision = step.get("result")
        if isinstance(decision, Mapping):
            more.append(f"◄ {decision_text(decision, paint)}")
    elif status == "waiting":
        if approval is None:
            parts.append(f"(key {key})")
        else:
            deadline = approval.get("deadline_at")
            until = f"until {when_text(deadline, now, tz)}" if deadline else "no deadline"
            parts.append(f"(key {key}, approvers {approvers_text(approval)}; {until})")
        if approval is not None and approval.get("status") != "pending":
            decision = approval.get("decision") or {"status": approval.get("status")}
            more.append(f"◄ request {decision_text(decision, paint)}")
        elif run.get("status") == "waiting":
            more.append(f"│ {PARKED} until a decision: tako approve {key} --by <you>")
    elif status == "failed":
        parts.append(paint(truncate(str(step.get("error") or "failed"), 80), "red"))
    return [f"{_step_head(step, paint, widths)}  {'  '.join(parts)}".rstrip(), *more]


def _approval_key(run: Run) -> str | None:
    """The key of the approval request the run waits for, if it waits for one.

    `waiting_for` is `approval:<key>` then, and the key starts with the run id; an
    event name such as `approval:order-42` (a signal) is not an approval request."""
    waiting_for = str(run.get("waiting_for") or "")
    if waiting_for.startswith(f"{APPROVAL_PREFIX}{run['run_id']}:"):
        return waiting_for[len(APPROVAL_PREFIX) :]
    return None


def _awaited_approval(
    run: Run, key: str, approvals: Mapping[str, Approval], now: datetime, tz: tzinfo | None
) -> str:
    """`approval r1:manager from alice, bob until Nov 28 06:20 (in 6d 23h)`."""
    approval = approvals.get(key[len(str(run["run_id"])) + 1 :])  # by step key
    if approval is None:
        return f"approval {key}"
    deadline = approval.get("deadline_at")
    until = f"until {when_text(deadline, now, tz)}" if deadline else "(no deadline)"
    return f"approval {key} from {approvers_text(approval)} {until}"


def _last_line(
    run: Run,
    now: datetime,
    paint: Paint,
    tz: tzinfo | None,
    approvals: Mapping[str, Approval] | None = None,
) -> str:
    status = str(run["status"])
    error = truncate(str(run.get("error") or ""), 100)
    wake = run.get("wake_at")
    if status == "completed":
        return f"└ {paint.status(status)} → {preview(run.get('result'), 70)}"
    if status == "failed":
        return f"└ {paint.status(status)}: {paint(error, 'red')}"
    if status == "cancelled":
        return f"└ {paint.status(status)}: {error or 'cancelled'}"
    approval_key = _approval_key(run)
    if status == "waiting" and approval_key is not None:
        awaited = _awaited_approval(run, approval_key, approvals or {}, now, tz)
        return f"└ {paint.status(status, 'waiting')} for {awaited}"
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
    approval_key = _approval_key(run)
    if status == "waiting" and approval_key is not None:
        return f"for approval {approval_key}"
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
    for i, sup in enumerate(plain(status.get("supervisors") or [])):  # several: PostgreSQL
        since = f"{sup['workers']} workers · since {when_text(sup['since'], now, tz)}"
        rows.append(("supervisors" if i == 0 else "", f"{sup['host']} pid {sup['pid']} · {since}"))
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


# -- approvals ----------------------------------------------------------------
