"""What `tako` prints for people about approval requests: the inbox table, one request,
a decision, and the phrases the run timeline and the web pages share.

Pure, as render.py is: JSON shapes in (as `--json` prints them), text out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from tako.cli.text import (
    Paint,
    compact_json,
    duration_text,
    local_time,
    parse_ts,
    preview,
    table,
    truncate,
)

Approval = Mapping[str, Any]
DECISION_COLOURS = {
    "approved": "green",
    "edited": "green",
    "rejected": "red",
    "timed_out": "yellow",
    "cancelled": "yellow",
    "pending": "cyan",
}


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
