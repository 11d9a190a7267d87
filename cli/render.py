"""What `tako` prints for people: the run timeline, the runs table, status, workflows
and approval requests.

Every function here is pure: it takes the JSON shapes of `--json` (as plain
dicts, exactly what `--json` prints), the current time and whether to
colour, and returns text. The commands only fetch and print, and the tests
render fixed runs without a supervisor, a clock or a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from tako._records import FINISHED
from tako.cli.options import plain
from tako.cli.text import (
    Paint,
    between,
    compact_json,
    duration_text,
    local_time,
    parse_ts,
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
DECISION_COLOURS = {
    "approved": "green",
    "edited": "green",
    "rejected": "red",
    "timed_out": "yellow",
    "cancelled": "yellow",
    "pending": "cyan",
}


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
    if run["status"] == "failed" and run.get("traceback"):
        lines += ["", paint.dim("traceback:")]
        lines += ["  " + line for line in str(run["traceback"]).rstrip().splitlines()]
    return "\n".join(lines)


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


def approvers_text(approval: Approval) -> str:
    """Who may decide: `alice, bob`, `anyone`; with a quorum, `alice, bob, carol (2 of 3;
    approved by alice)`."""
    approvers = approval.get("approvers")
    required = int(approval.get("required") or 1)
    done = list(approval.get("approved_by") or [])
    who = "anyone" if approvers is None else (", ".join(approvers) or "nobody")
    if required > 1:
        quorum = f"{required} needed" if approvers is None else f"{required} of {len(approvers)}"
        so_far = f"; approved by {', '.join(done)}" if done else ""
        who += f" ({quorum}{so_far})"
    return who


def decision_text(decision: Mapping[str, Any], paint: Paint | None = None) -> str:
    """How a request was decided, from its decision (a step result or `approval.decision`):
    `approved by alice`, `edited by bob → {...}`, `rejected by carol: too much`, `timed out`."""
    paint = paint or Paint(False)
    status = str(decision.get("status"))
    by = decision.get("by")
    reason = decision.get("reason")
    if status == "approved":
        text = f"approved by {', '.join(decision.get('approved_by') or [str(by)])}"
    elif status == "edited":
        others = [a for a in decision.get("approved_by") or [] if a != by]
        text = f"edited by {by}: {edit_text(decision.get('value'), decision.get('original'))}"
        if others:
            text += f" (approved by {', '.join([*others, str(by)])})"
    elif status == "rejected":
        text = f"rejected by {by}: {reason}"
    elif status == "timed_out":
        text = "timed out"
    elif status == "cancelled":
        text = "cancelled" + (f" by {by}" if by else "") + (f": {reason}" if reason else "")
    else:
        text = status
    return paint(text, DECISION_COLOURS.get(status))


def left_text(deadline: str | None, now: datetime) -> str:
    """Time left until a deadline: `23h 59m`, `overdue`, or `no deadline`."""
    when = parse_ts(deadline)
    if when is None:
        return "no deadline"
    seconds = (when - now).total_seconds()
    return duration_text(seconds) if seconds > 0 else "overdue"


def render_approvals(
    approvals: Sequence[Approval],
    *,
    now: datetime,
    color: bool = False,
    empty: str = "no pending approvals",
) -> str:
    """`tako approvals`: a table, oldest first (the order takod returns)."""
    if not approvals:
        return empty
    paint = Paint(color)
    header = ["KEY", "WORKFLOW", "STATUS", "SUMMARY", "WHO MAY DECIDE", "LEFT"]
    rows = [
        [
            str(a["key"]),
            str(a["workflow"]),
            str(a["status"]),
            truncate(str(a.get("summary") or ""), 50),
            approvers_text(a),
            left_text(a.get("deadline_at"), now) if a["status"] == "pending" else "-",
        ]
        for a in approvals
    ]
    if all(a["status"] == "pending" for a in approvals):  # the usual list: no status column
        header.pop(2)
        rows = [row[:2] + row[3:] for row in rows]
    lines = [table(rows, header, paint)]
    if any(a["status"] == "pending" for a in approvals):
        lines.append(
            paint.dim(
                "decide: tako approve KEY --by NAME [--value JSON]"
                " · tako reject KEY --by NAME --reason TEXT · details: tako approvals show KEY"
            )
        )
    return "\n".join(lines)


def render_approval(
    approval: Approval, *, now: datetime, color: bool = False, tz: tzinfo | None = None
) -> str:
    """`tako approvals show`: the request, its decision, and its history as a timeline."""
    paint = Paint(color)
    status = str(approval["status"])
    rows: list[tuple[str, str]] = [
        ("approval", paint(str(approval["key"]), bold=True)),
        ("run", f"{approval['run_id']} ({approval['workflow']}) · step {approval['step']}"),
        ("status", paint(status, DECISION_COLOURS.get(status), bold=True)),
        ("summary", str(approval.get("summary") or "")),
        ("approvers", approvers_text({**approval, "required": 1})),
        ("required", _required_text(approval)),
    ]
    deadline = approval.get("deadline_at")
    if deadline is None:
        rows.append(("deadline", "none"))
    elif status == "pending":
        left = left_text(deadline, now)
        left = left if left == "overdue" else f"{left} left"
        rows.append(("deadline", f"{local_time(deadline, now, tz)} ({left})"))
    else:
        rows.append(("deadline", local_time(deadline, now, tz)))
    rows.append(("created", local_time(approval.get("created_at"), now, tz)))
    decision = approval.get("decision")
    if decision:
        decided = decision_text(decision, paint)
        if decision.get("decided_at"):
            decided += f" at {local_time(decision['decided_at'], now, tz)}"
        rows.append(("decision", decided))
    width = max(len(k) for k, _ in rows)
    lines = [f"{paint.dim(k.ljust(width))}  {v}" for k, v in rows]
    lines += ["", paint.dim("data"), *_json_block(approval.get("data"))]
    if decision and decision.get("status") == "edited":
        lines += [paint.dim("approved value (edited)"), *_json_block(decision.get("value"))]
    history = approval.get("history")
    if history is not None:
        lines += ["", paint.dim("history")]
        lines += [f"  {local_time(h['at'], now, tz)}  {history_text(h, paint)}" for h in history]
    if status == "pending":
        key = approval["key"]
        lines += [
            "",
            paint.dim(f"approve: tako approve {key} --by NAME [--value JSON]"),
            paint.dim(f"reject:  tako reject {key} --by NAME --reason TEXT"),
        ]
    return "\n".join(lines)


def _required_text(approval: Approval) -> str:
    required = int(approval.get("required") or 1)
    done = list(approval.get("approved_by") or [])
    text = f"{required} approval{'s' if required > 1 else ''}"
    if done and required > 1:
        text += f" · approved by {', '.join(done)} ({len(done)} of {required})"
    return text


def _json_block(value: Any) -> list[str]:
    """A value as indented JSON: on one line when it is short, pretty-printed otherwise."""
    one_line = compact_json(value)
    if len(one_line) <= 76:
        return [f"  {one_line}"]
    return ["  " + line for line in json.dumps(value, indent=2, ensure_ascii=False).splitlines()]


def edit_text(value: Any, original: Any, width: int = 100) -> str:
    """What an edit changed: `amount 129900 → 60000` for the fields of an object that
    differ, else `{...} (was {...})`."""
    if isinstance(value, Mapping) and isinstance(original, Mapping):
        changed = [
            f"{k} {compact_json(original.get(k))} → {compact_json(value.get(k))}"
            if k in original and k in value
            else (f"+{k} {compact_json(value[k])}" if k in value else f"-{k}")
            for k in [*original, *(k for k in value if k not in original)]
            if original.get(k, ...) != value.get(k, ...)
        ]
        if changed:
            return truncate(", ".join(changed), width)
    return f"{preview(value, width // 2)} (was {preview(original, width // 2)})"


def history_text(entry: Mapping[str, Any], paint: Paint | None = None) -> str:
    """One history entry: `approved by alice`, `edited by bob → {...} (was {...})`, ..."""
    paint = paint or Paint(False)
    event, actor, reason = str(entry["event"]), entry.get("actor"), entry.get("reason")
    by = f" by {actor}" if actor else ""
    if event == "escalated":
        added = entry.get("value") or []
        return paint(f"escalated (+{', '.join(added)})" if added else "escalated", "yellow")
    if event == "edited":
        return paint(f"edited{by}: {edit_text(entry.get('value'), entry.get('original'))}", "green")
    if event == "approved":
        return paint(f"approved{by}", "green")
    if event == "rejected":
        return paint(f"rejected{by}: {reason}", "red")
    if event == "timed_out":
        return paint("timed out", "yellow")
    if event == "cancelled":
        return paint(f"cancelled{by}" + (f": {reason}" if reason else ""), "yellow")
    return f"{event}{by}" + (f": {reason}" if reason else "")


def render_decided(approval: Approval, *, color: bool = False) -> str:
    """What `tako approve`, `reject` and `approvals cancel` print: the request's state now."""
    paint = Paint(color)
    key, status = str(approval["key"]), str(approval["status"])
    if status == "pending":
        done = list(approval.get("approved_by") or [])
        required = int(approval.get("required") or 1)
        missing = required - len(done)
        who = approval.get("approvers")
        others = "" if who is None else f" from {', '.join(a for a in who if a not in done)}"
        return (
            f"{key}: approved by {', '.join(done) or 'nobody yet'} ({len(done)} of {required});"
            f" waiting for {missing} more approval{'s' if missing > 1 else ''}{others}"
        )
    decision = approval.get("decision") or {"status": status}
    return f"{key} {decision_text(decision, paint)} · run {approval['run_id']} continues"
