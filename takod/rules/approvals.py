"""How decisions on an approval request count, and what its timers do: pure functions.

A backend loads the request and its recorded history, asks `decide` or
`on_timers`, and writes the verdict in the same transaction. The decision
rules, in order:

1. a repeated `decision_id`, or the same actor repeating the same action
   with the same value, succeeds again and changes nothing;
2. any other action on a decided request is refused with its state;
3. a stale `seen` digest (the value changed since it was shown) is refused;
4. an actor outside `approvers` is refused;
5. an edited value must match the request's type (its JSON Schema), or the
   request stays pending and the caller is told why;
6. approvals count once per actor and toward one value (an edit restarts the
   count with its editor); `required` distinct ones decide it; one rejection
   rejects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec

from tako._errors import InvalidRequest, NotAllowed, Stale
from tako._protocol import ApprovalSpec
from tako._records import StoredDecision, iso

SchemaCheck = Callable[[str, bytes], str | None]
DECIDED = ("approved", "edited", "rejected", "timed_out", "cancelled")
_EVENTS_OF = {"approve": ("approved", "edited"), "reject": ("rejected",), "cancel": ("cancelled",)}


class Request(msgspec.Struct, kw_only=True):
    """An approval request as the rules see it (moments in ms)."""

    key: str
    run_id: str
    step_key: str
    status: str
    data: bytes
    value: bytes
    schema: str | None
    approvers: list[str] | None
    required: int
    approved_by: list[str]
    decision: bytes | None
    decided_at: int | None
    on_timeout: str
    remind_every: int | None
    escalate_to: list[str] | None
    deadline_at: int | None
    remind_at: int | None
    escalate_at: int | None


class Past(NamedTuple):
    """One recorded history entry, as far as the rules care."""

    event: str
    actor: str | None
    value: bytes | None
    decision_id: str | None


class Entry(NamedTuple):
    """A history entry to record."""

    event: str
    actor: str | None = None
    value: bytes | None = None
    original: bytes | None = None
    reason: str | None = None
    decision_id: str | None = None


class Verdict(NamedTuple):
    """What one decision does: entries to record, the new count and value, and the
    request's final status when this decision settled it (else None)."""

    history: list[Entry]
    approved_by: list[str]
    value: bytes
    settle: str | None = None
    reason: str | None = None


def decide(
    req: Request,
    past: Sequence[Past],
    *,
    action: str,
    by: str,
    check: SchemaCheck,
    value: bytes | None = None,
    reason: str | None = None,
    decision_id: str | None = None,
    seen: str | None = None,
) -> Verdict | None:
    """The verdict on one decision, None when it repeats one already applied; raises
    when it is refused (NotAllowed, Stale, InvalidRequest)."""
    if decision_id is not None and any(p.decision_id == decision_id for p in past):
        return None  # this exact decision was already applied
    if req.status != "pending":
        if _repeats(past, action, by, value):
            return None
        raise NotAllowed(decided_message(req))
    if seen is not None and seen != digest(req.value):
        raise Stale(
            f"the value of {req.key} changed since it was shown (another approver edited it);"
            f" it is now {req.value.decode(errors='replace')}"
        )
    if req.approvers is not None and by not in req.approvers:
        raise NotAllowed(
            f"{by} may not decide {req.key}: approvers are {', '.join(req.approvers) or 'none'}"
        )
    if action == "approve":
        return _approve(req, past, by, value, decision_id, check)
    if action == "reject":
        if not reason:
            raise InvalidRequest("a rejection needs a reason")
        entry = Entry("rejected", by, reason=reason, decision_id=decision_id)
        return Verdict([entry], req.approved_by, req.value, "rejected", reason)
    entry = Entry("cancelled", by, reason=reason, decision_id=decision_id)
    return Verdict([entry], req.approved_by, req.value, "cancelled", reason)


def _approve(
    req: Request,
    past: Sequence[Past],
    by: str,
    value: bytes | None,
    decision_id: str | None,
    check: SchemaCheck,
) -> Verdict | None:
    if by in req.approved_by:
        if _repeats(past, "approve", by, value):
            return None  # a double click: counted once
        raise NotAllowed(f"{by} already approved {req.key}; another approver is needed")
    edited = value is not None and value != req.data
    if value is not None and req.schema is not None:
        problem = check(req.schema, value)
        if problem is not None:
            raise InvalidRequest(f"the edited value does not match the request's type: {problem}")
    current = value if value is not None else req.value
    # approvals count toward one value: a new value restarts the count with its editor
    approved_by = [*req.approved_by, by] if current == req.value else [by]
    entry = Entry(
        "edited" if edited else "approved", by, value=current,
        original=req.data if edited else None, decision_id=decision_id,
    )  # fmt: skip
    if len(approved_by) < req.required:
        return Verdict([entry], approved_by, current)
    settled = "edited" if edited or current != req.data else "approved"
    return Verdict([entry], approved_by, current, settled)


def _repeats(past: Sequence[Past], action: str, by: str, value: bytes | None) -> bool:
    """Is this the same actor repeating the action that is already recorded?"""
    events = _EVENTS_OF.get(action, ("cancelled",))
    return any(
        p.actor == by
        and p.event in events
        and (value is None or p.value is None or p.value == value)
        for p in past
    )


def decision(
    req: Request, status: str, *, by: str | None, now: int, reason: str | None = None
) -> bytes:
    """The settled request's decision, as stored and as the run's approval step returns
    it. `req` carries the count and value the verdict left."""
    approved = status in ("approved", "edited")
    return msgspec.json.encode(
        StoredDecision(
            status=status,
            approved=approved,
            value=msgspec.Raw(req.value if approved else req.data),
            by=by,
            approved_by=req.approved_by,
            reason=reason,
            original=msgspec.Raw(req.data),
            decided_at=now,
        )
    )


ENDED_WITH_RUN = msgspec.json.encode({"status": "cancelled", "approved": False})


# -- timers -----------------------------------------------------------------------------


class Timers(NamedTuple):
    """What a request's due timers do now. `timed_out`: it settles as timed out (and
    `fail_run`: its run fails with it). Else `escalated` approvers are added (the new
    list in `approvers`), `reminded` sends a reminder, and the timers move on."""

    timed_out: bool = False
    fail_run: bool = False
    escalated: list[str] | None = None
    approvers: list[str] | None = None
    reminded: bool = False
    remind_at: int | None = None
    escalate_at: int | None = None
    timer_at: int | None = None


def on_timers(req: Request, now: int) -> Timers:
    if req.deadline_at is not None and req.deadline_at <= now:
        return Timers(timed_out=True, fail_run=req.on_timeout == "fail")
    escalated: list[str] | None = None
    approvers = req.approvers
    escalate_at = req.escalate_at
    if escalate_at is not None and escalate_at <= now:
        escalated = [a for a in req.escalate_to or [] if a not in (req.approvers or [])]
        approvers = None if req.approvers is None else req.approvers + escalated
        escalate_at = None
    remind_at = req.remind_at
    reminded = remind_at is not None and remind_at <= now
    if reminded:
        assert req.remind_every is not None
        remind_at = now + req.remind_every
    return Timers(
        escalated=escalated, approvers=approvers, reminded=reminded, remind_at=remind_at,
        escalate_at=escalate_at, timer_at=earliest(req.deadline_at, remind_at, escalate_at),
    )  # fmt: skip


def timers(spec: ApprovalSpec, now: int) -> tuple[int | None, int | None, int | None]:
    """When a new request's deadline, first reminder and escalation fall due (ms)."""
    deadline = now + int(spec.timeout * 1000) if spec.timeout is not None else None
    remind = now + int(spec.remind_every * 1000) if spec.remind_every else None
    escalate = (
        now + int(spec.escalate_after * 1000)
        if spec.escalate_after is not None and spec.escalate_to
        else None
    )
    return deadline, remind, escalate


def first_timer(spec: ApprovalSpec, now: int) -> int | None:
    return earliest(*timers(spec, now))


def earliest(*times: int | None) -> int | None:
    due = [t for t in times if t is not None]
    return min(due) if due else None


def digest(value: bytes) -> str:
    """What a decider passes as `seen`: the hex SHA-256 of the value they were shown."""
    return hashlib.sha256(value).hexdigest()


def decided_message(req: Request) -> str:
    by = msgspec.json.decode(req.decision).get("by") if req.decision else None
    who = f" by {by}" if by else ""
    return f"{req.key} is already {req.status}{who} at {iso(req.decided_at)}"
