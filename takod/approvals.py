"""Approval requests: durable records with a decision protocol (SPEC §9).

A request is created in the transaction that parks its run. Every decision
is one transaction too: it reads the request, applies the rules below, and
when the request is decided it completes the run's approval step with the
decision and makes the run ready. The rules, in order:

1. a repeated `decision_id`, or the same actor repeating the same action
   with the same value, succeeds again and returns the current state;
2. any other action on a decided request is refused with its state;
3. an actor outside `approvers` is refused;
4. an edited value must match the request's type (its JSON Schema), or the
   request stays pending and the caller is told why;
5. approvals count once per actor; `required` distinct ones decide it; one
   rejection rejects.

Like the store, these methods run inside the committer's transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec

from tako._errors import ApprovalNotFound, InvalidRequest, NotAllowed, Stale
from tako._protocol import ApprovalSpec, readable_json

SchemaCheck = Callable[[str, bytes], str | None]
# (key, approvers, deadline_at, created_at) -> {approver: {"view", "approve", "reject"}}
Links = Callable[[str, list[str] | None, int | None, int], dict[str, dict[str, str]]]
DECIDED = ("approved", "edited", "rejected", "timed_out", "cancelled")
_COLUMNS = (
    "key, run_id, step_key, workflow, status, summary, data, value, approvers, required,"
    " approved_by, decision, schema, on_timeout, remind_every, escalate_to, created_at,"
    " deadline_at, remind_at, escalate_at, decided_at"
)


class Decided(msgspec.Struct, kw_only=True):
    """The step's result, as the worker decodes it into `tako.Decision`."""

    status: str
    approved: bool
    value: msgspec.Raw
    by: str | None
    approved_by: list[str]
    reason: str | None
    original: msgspec.Raw
    decided_at: int


class ApprovalStore:
    def __init__(self, conn: sqlite3.Connection, *, targets: tuple[str, ...] = ()) -> None:
        self.conn = conn
        self.targets = targets  # where events go: "webhook", "notifiers" (none: no outbox)
        self.links: Links | None = None  # signs the links events carry (takod/links.py)

    # -- creating -------------------------------------------------------------------

    def create(
        self, key: str, run_id: str, step_key: str, spec: ApprovalSpec, now: int
    ) -> bytes | None:
        """Store the request (once: a replayed park finds it). Returns the decision when
        the request was already decided, so the run goes on without parking."""
        row = self.conn.execute(
            "SELECT status, decision FROM approvals WHERE key = ?", (key,)
        ).fetchone()
        if row is not None:
            return bytes(row[1]) if row[0] in DECIDED else None
        workflow = self.conn.execute(
            "SELECT workflow FROM runs WHERE id = ?", (run_id,)
        ).fetchone()[0]
        deadline, remind, escalate = timers(spec, now)
        schema = bytes(spec.schema)
        data = bytes(spec.data)
        self.conn.execute(
            "INSERT INTO approvals (key, run_id, step_key, workflow, status, summary, data,"
            " value, approvers, required, schema, on_timeout, remind_every, escalate_to,"
            " created_at, deadline_at, remind_at, escalate_at, timer_at)"
            " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key, run_id, step_key, workflow, spec.summary, data, data,
                _json_list(spec.approvers), spec.required,
                None if schema == b"null" else schema.decode(), spec.on_timeout,
                int(spec.remind_every * 1000) if spec.remind_every else None,
                _json_list(spec.escalate_to), now, deadline, remind, escalate,
                _earliest(deadline, remind, escalate),
            ),
        )  # fmt: skip
        self._history(key, now, "created")
        self._notify(key, "requested", now)
        return None

    # -- deciding -------------------------------------------------------------------

    def decide(
        self,
        action: str,
        key: str,
        *,
        by: str,
        now: int,
        check: SchemaCheck,
        value: bytes | None = None,
        reason: str | None = None,
        decision_id: str | None = None,
        seen: str | None = None,
    ) -> str | None:
        """Apply one decision (`approve`, `reject` or `cancel`). Returns the run id to
        resume when this decision settled the request, else None. `seen`: the value
        digest the decider was shown; refused (`Stale`) when the value changed since."""
        req = self._load(key)
        if (
            decision_id is not None
            and self.conn.execute(
                "SELECT 1 FROM approval_history WHERE key = ? AND decision_id = ?",
                (key, decision_id),
            ).fetchone()
        ):
            return None  # this exact decision was already applied
        if req["status"] != "pending":
            if self._repeats(req, action, by, value, reason):
                return None
            raise NotAllowed(_decided_message(req))
        if seen is not None and seen != digest(req["value"]):
            raise Stale(
                f"the value of {key} changed since it was shown (another approver edited it);"
                f" it is now {req['value'].decode(errors='replace')}"
            )
        approvers = req["approvers"]
        if approvers is not None and by not in approvers:
            raise NotAllowed(
                f"{by} may not decide {key}: approvers are {', '.join(approvers) or 'none'}"
            )
        if action == "approve":
            return self._approve(req, by, value, decision_id, now, check)
        if action == "reject":
            if not reason:
                raise InvalidRequest("a rejection needs a reason")
            self._history(key, now, "rejected", actor=by, reason=reason, decision_id=decision_id)
            return self._settle(req, "rejected", by=by, reason=reason, now=now)
        self._history(key, now, "cancelled", actor=by, reason=reason, decision_id=decision_id)
        return self._settle(req, "cancelled", by=by, reason=reason, now=now)

    def _approve(
        self,
        req: dict[str, Any],
        by: str,
        value: bytes | None,
        decision_id: str | None,
        now: int,
        check: SchemaCheck,
    ) -> str | None:
        key = req["key"]
        if by in req["approved_by"]:
            if self._repeats(req, "approve", by, value, None):
                return None  # a double click: counted once
            raise NotAllowed(f"{by} already approved {key}; another approver is needed")
        edited = value is not None and value != req["data"]
        if value is not None and req["schema"] is not None:
            problem = check(req["schema"], value)
            if problem is not None:
                raise InvalidRequest(
                    f"the edited value does not match the request's type: {problem}"
                )
        current = value if value is not None else req["value"]
        # approvals count toward one value: a new value restarts the count with its editor
        approved_by = [*req["approved_by"], by] if current == req["value"] else [by]
        self.conn.execute(
            "UPDATE approvals SET approved_by = ?, value = ? WHERE key = ?",
            (json.dumps(approved_by), current, key),
        )
        self._history(
            key, now, "edited" if edited else "approved", actor=by,
            value=current, original=req["data"] if edited else None, decision_id=decision_id,
        )  # fmt: skip
        if len(approved_by) < req["required"]:
            return None
        was_edited = edited or current != req["data"]
        req.update(approved_by=approved_by, value=current)
        return self._settle(req, "edited" if was_edited else "approved", by=by, now=now)

    def _repeats(
        self, req: dict[str, Any], action: str, by: str, value: bytes | None, reason: str | None
    ) -> bool:
        """Is this the same actor repeating the action that is already recorded?"""
        events = {"approve": ("approved", "edited"), "reject": ("rejected",)}.get(
            action, ("cancelled",)
        )
        for event, recorded in self.conn.execute(
            "SELECT event, value FROM approval_history WHERE key = ? AND actor = ?",
            (req["key"], by),
        ):
            if event in events and (value is None or recorded is None or bytes(recorded) == value):
                return True
        return False

    def _settle(
        self,
        req: dict[str, Any],
        status: str,
        *,
        by: str | None,
        now: int,
        reason: str | None = None,
    ) -> str | None:
        """Record the decision and complete the run's approval step with it."""
        approved = status in ("approved", "edited")
        decision = msgspec.json.encode(
            Decided(
                status=status,
                approved=approved,
                value=msgspec.Raw(req["value"] if approved else req["data"]),
                by=by,
                approved_by=req["approved_by"],
                reason=reason,
                original=msgspec.Raw(req["data"]),
                decided_at=now,
            )
        )
        self.conn.execute(
            "UPDATE approvals SET status = ?, decision = ?, decided_at = ?, timer_at = NULL"
            " WHERE key = ?",
            (status, decision, now, req["key"]),
        )
        self._notify(req["key"], "resolved", now)
        waiting = self.conn.execute(
            "SELECT 1 FROM runs WHERE id = ? AND status = 'waiting' AND waiting_for = ?",
            (req["run_id"], f"approval:{req['key']}"),
        ).fetchone()
        if waiting is None:
            return None  # the run is not parked here (cancelled, or parking right now)
        self.conn.execute(
            "UPDATE steps SET status = 'completed', result = ?, finished_at = ?"
            " WHERE run_id = ? AND key = ?",
            (decision, now, req["run_id"], req["step_key"]),
        )
        self.conn.execute(
            "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_for = NULL,"
            " updated_at = ? WHERE id = ?",
            (now, req["run_id"]),
        )
        return str(req["run_id"])

    # -- time -----------------------------------------------------------------------

    def next_timer(self) -> int | None:
        row = self.conn.execute(
            "SELECT MIN(timer_at) FROM approvals WHERE timer_at IS NOT NULL"
        ).fetchone()
        return None if row is None else row[0]

    def due(self, now: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Deadlines, escalations and reminders that fell due. Returns (runs to resume,
        (run, error) for runs that fail because their request timed out)."""
        resume: list[str] = []
        fail: list[tuple[str, str]] = []
        keys = [
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM approvals WHERE timer_at IS NOT NULL AND timer_at <= ?", (now,)
            ).fetchall()
        ]
        for key in keys:
            req = self._load(key)
            if req["deadline_at"] is not None and req["deadline_at"] <= now:
                self._history(key, now, "timed_out")
                run_id = self._settle(req, "timed_out", by=None, now=now)
                if req["on_timeout"] == "fail":
                    fail.append((req["run_id"], f"approval {key} timed out"))
                elif run_id is not None:
                    resume.append(run_id)
                continue
            if req["escalate_at"] is not None and req["escalate_at"] <= now:
                added = [a for a in req["escalate_to"] or [] if a not in (req["approvers"] or [])]
                approvers = None if req["approvers"] is None else req["approvers"] + added
                self.conn.execute(
                    "UPDATE approvals SET approvers = ?, escalate_at = NULL WHERE key = ?",
                    (_json_list(approvers), key),
                )
                self._history(key, now, "escalated", value=json.dumps(added).encode())
                self._notify(key, "escalated", now)
                req.update(escalate_at=None)
            if req["remind_at"] is not None and req["remind_at"] <= now:
                self._history(key, now, "reminded")
                self._notify(key, "reminder", now)
                req["remind_at"] = now + req["remind_every"]
                self.conn.execute(
                    "UPDATE approvals SET remind_at = ? WHERE key = ?", (req["remind_at"], key)
                )
            self.conn.execute(
                "UPDATE approvals SET timer_at = ? WHERE key = ?",
                (_earliest(req["deadline_at"], req["remind_at"], req["escalate_at"]), key),
            )
        return resume, fail

    def forget_run(self, run_id: str) -> None:
        """The run is pruned: so are its requests, their history and undelivered events
        (a later run reusing the id must never inherit an old decision)."""
        for (key,) in self.conn.execute(
            "SELECT key FROM approvals WHERE run_id = ?", (run_id,)
        ).fetchall():
            self._delete(key)

    def forget_unfinished(self, run_id: str) -> None:
        """A retried run asks again for every request whose step did not complete."""
        for (key,) in self.conn.execute(
            "SELECT a.key FROM approvals a JOIN steps s ON s.run_id = a.run_id"
            " AND s.key = a.step_key WHERE a.run_id = ? AND s.status != 'completed'",
            (run_id,),
        ).fetchall():
            self._delete(key)

    def _delete(self, key: str) -> None:
        for table, column in (("approval_history", "key"), ("outbox", "key"), ("approvals", "key")):
            self.conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))

    def cancel_for_run(self, run_id: str, now: int) -> None:
        """The run ended (cancelled, failed): its open requests are cancelled with it."""
        for (key,) in self.conn.execute(
            "SELECT key FROM approvals WHERE run_id = ? AND status = 'pending'", (run_id,)
        ).fetchall():
            self._history(key, now, "cancelled", reason="the run ended")
            self.conn.execute(
                "UPDATE approvals SET status = 'cancelled', decided_at = ?, timer_at = NULL,"
                " decision = ? WHERE key = ?",
                (now, msgspec.json.encode({"status": "cancelled", "approved": False}), key),
            )
            self._notify(key, "resolved", now)

    # -- helpers --------------------------------------------------------------------

    def _load(self, key: str) -> dict[str, Any]:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise ApprovalNotFound(f"no approval request with key {key!r} (see `tako approvals`)")
        req = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))
        for field in ("approvers", "escalate_to"):
            req[field] = json.loads(req[field]) if req[field] is not None else None
        req["approved_by"] = json.loads(req["approved_by"])
        req["data"], req["value"] = bytes(req["data"]), bytes(req["value"])
        return req

    def _notify(self, key: str, kind: str, now: int) -> None:
        """Append an ApprovalEvent to the outbox, in this same transaction: the event
        exists exactly when the change does. Its id is stable: `<key>#<n>`."""
        if not self.targets:
            return
        n = self.conn.execute(
            "SELECT COUNT(DISTINCT id) FROM outbox WHERE key = ?", (key,)
        ).fetchone()[0]
        event_id = f"{key}#{n + 1}"
        row = self.conn.execute(
            "SELECT run_id, workflow, step_key, status, summary, data, approvers, required,"
            " approved_by, decision, deadline_at, created_at FROM approvals WHERE key = ?",
            (key,),
        ).fetchone()
        from takod.store import iso

        approvers = json.loads(row[6]) if row[6] else None
        links = (
            self.links(key, approvers, row[10], row[11])
            if self.links is not None and kind != "resolved"
            else None
        )
        body = msgspec.json.encode(
            {
                "id": event_id, "type": kind, "at": iso(now), "key": key, "run_id": row[0],
                "workflow": row[1], "step": row[2], "status": row[3], "summary": row[4],
                "data": msgspec.Raw(row[5]), "approvers": approvers,
                "required": row[7], "approved_by": json.loads(row[8]),
                "decision": _decision_object(row[9]),
                "deadline_at": iso(row[10]), "links": links,
            }
        )  # fmt: skip
        for target in self.targets:
            seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0]
            self.conn.execute(
                "INSERT INTO outbox (id, target, seq, key, body, next_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, target, seq, key, body, now),
            )

    def _history(
        self,
        key: str,
        now: int,
        event: str,
        *,
        actor: str | None = None,
        value: bytes | None = None,
        original: bytes | None = None,
        reason: str | None = None,
        decision_id: str | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO approval_history (key, at, event, actor, value, original, reason,"
            " decision_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, now, event, actor, value, original, reason, decision_id),
        )


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
    return _earliest(*timers(spec, now))


def digest(value: bytes) -> str:
    """What a decider passes as `seen`: the hex SHA-256 of the value they were shown."""
    return hashlib.sha256(value).hexdigest()


def _decision_object(raw: bytes | None) -> dict[str, Any] | None:
    """A stored decision as clients see it (decided_at as ISO 8601)."""
    from takod.store import iso

    if raw is None:
        return None
    decided: dict[str, Any] = json.loads(raw)
    if "decided_at" in decided:
        decided["decided_at"] = iso(decided["decided_at"])
    return decided


def _json_list(items: list[str] | None) -> str | None:
    return None if items is None else json.dumps(items)


def _earliest(*times: int | None) -> int | None:
    due = [t for t in times if t is not None]
    return min(due) if due else None


def _decided_message(req: dict[str, Any]) -> str:
    from takod.store import iso

    decision = json.loads(req["decision"]) if req["decision"] else {}
    by = decision.get("by")
    who = f" by {by}" if by else ""
    return f"{req['key']} is already {req['status']}{who} at {iso(req['decided_at'])}"


# -- reading (the read-only connection, rows as sqlite3.Row) ---------------------------


def approval_object(row: sqlite3.Row, history: list[sqlite3.Row] | None = None) -> dict[str, Any]:
    """SPEC §9's approval object; `history` only for `show`."""
    from takod.store import iso

    decision = _decision_object(row["decision"])
    out: dict[str, Any] = {
        "key": row["key"],
        "run_id": row["run_id"],
        "workflow": row["workflow"],
        "step": row["step_key"],
        "status": row["status"],
        "summary": row["summary"],
        "data": readable_json(row["data"]),
        "value": readable_json(row["value"]),  # what approvals count for: data, or an edit
        "digest": digest(row["value"]),
        # the JSON Schema an edited value must match (the request's `type=`), or null
        "schema": readable_json(row["schema"]) if row["schema"] is not None else None,
        "approvers": json.loads(row["approvers"]) if row["approvers"] is not None else None,
        "required": row["required"],
        "approved_by": json.loads(row["approved_by"]),
        "decision": decision,
        "created_at": iso(row["created_at"]),
        "deadline_at": iso(row["deadline_at"]),
    }
    if history is not None:
        out["history"] = [
            {
                "at": iso(h["at"]),
                "event": h["event"],
                "actor": h["actor"],
                "value": readable_json(h["value"]) if h["value"] is not None else None,
                "original": readable_json(h["original"]) if h["original"] is not None else None,
                "reason": h["reason"],
            }
            for h in history
        ]
    return out


def read_approval(conn: sqlite3.Connection, key: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM approvals WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise ApprovalNotFound(f"no approval request with key {key!r} (see `tako approvals`)")
    history = conn.execute(
        "SELECT * FROM approval_history WHERE key = ? ORDER BY id", (key,)
    ).fetchall()
    return approval_object(row, history)


def read_approvals(
    conn: sqlite3.Connection,
    *,
    approver: str | None = None,
    workflow: str | None = None,
    status: str | None = "pending",
    run_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Requests oldest first; with `approver`, only those that actor may decide."""
    where, args = [], []
    for column, value in (("status", status), ("workflow", workflow), ("run_id", run_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    out = []
    for row in conn.execute(f"SELECT * FROM approvals {clause} ORDER BY created_at, key", args):
        may = row["approvers"] is None or approver in json.loads(row["approvers"])
        if approver is not None and not may:
            continue
        out.append(approval_object(row))
        if len(out) >= limit:
            break
    return out
