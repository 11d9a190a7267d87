"""The SQLite backend's writes on approval requests, their outbox and API tokens.

A request is created in the transaction that parks its run; every decision
and every timer is one transaction too, which loads the request, asks
`takod.rules.approvals` for the verdict and writes it: the history entries,
the new count, and, when it is settled, the decision, the run's approval step
and the run made ready. Each change appends its event to the outbox in the
same transaction, so the event exists exactly when the change does.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import msgspec

from tako._errors import ApprovalNotFound, NotAllowed
from tako._protocol import ApprovalSpec
from tako._records import iso
from tako.takod.rules import approvals as rules
from tako.takod.rules.approvals import Entry, Past, Request
from tako.takod.storage.interface import (
    ApprovalEvents,
    Ask,
    OutboxEvent,
    SchemaCheck,
    TokenNotFound,
)
from tako.takod.storage.sqlite.portable import SQLITE, Conn, Dialect
from tako.takod.storage.sqlite.reads import decision_object, hash_token

_COLUMNS = (
    "key, run_id, step_key, status, data, value, schema, approvers, required, approved_by,"
    " decision, decided_at, on_timeout, remind_every, escalate_to, deadline_at, remind_at,"
    " escalate_at"
)
C = TypeVar("C", bound=Conn)
TOKEN_PREFIX = "tako_"  # recognisable in a config file or a leak scanner


class ApprovalWrites(Generic[C]):
    def __init__(self, conn: C, events: ApprovalEvents, dialect: Dialect = SQLITE) -> None:
        self.conn = conn
        self.events = events
        self.dialect = dialect

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo everything inside if it raises (unless SQLite already rolled the whole
        transaction back, as on a full disk: then the error says so to the committer)."""
        self.conn.execute("SAVEPOINT verb")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO SAVEPOINT verb")
                self.conn.execute("RELEASE SAVEPOINT verb")
            raise
        self.conn.execute("RELEASE SAVEPOINT verb")

    # -- creating ---------------------------------------------------------------------

    def create_approval(
        self, run_id: str, step_key: str, spec: ApprovalSpec, now: int
    ) -> bytes | None:
        """Store the request (once: a replayed park finds it). Returns the decision when
        the request was already decided, so the run goes on without parking."""
        key = f"{run_id}:{step_key}"
        row = self.conn.execute(
            "SELECT status, decision FROM approvals WHERE key = ?", (key,)
        ).fetchone()
        if row is not None:
            return bytes(row[1]) if row[0] in rules.DECIDED else None
        workflow = self.conn.execute(
            "SELECT workflow FROM runs WHERE id = ?", (run_id,)
        ).fetchone()[0]
        deadline, remind, escalate = rules.timers(spec, now)
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
                rules.earliest(deadline, remind, escalate),
            ),
        )  # fmt: skip
        self._history(key, now, Entry("created"))
        self._notify(key, "requested", now)
        return None

    # -- deciding ---------------------------------------------------------------------

    def decide(self, ask: Ask, now: int, check: SchemaCheck) -> str | None:
        req = self._load(ask.key)
        past = [
            Past(event, actor, None if value is None else bytes(value), decision_id)
            for event, actor, value, decision_id in self.conn.execute(
                "SELECT event, actor, value, decision_id FROM approval_history WHERE key = ?",
                (ask.key,),
            )
        ]
        verdict = rules.decide(
            req, past, action=ask.action, by=ask.by, check=check, value=ask.value,
            reason=ask.reason, decision_id=ask.decision_id, seen=ask.seen,
        )  # fmt: skip
        if verdict is None:
            return None
        if verdict.approved_by != req.approved_by or verdict.value != req.value:
            self.conn.execute(
                "UPDATE approvals SET approved_by = ?, value = ? WHERE key = ?",
                (json.dumps(verdict.approved_by), verdict.value, ask.key),
            )
            req.approved_by, req.value = verdict.approved_by, verdict.value
        for entry in verdict.history:
            self._history(ask.key, now, entry)
        if verdict.settle is None:
            return None
        return self._settle(req, verdict.settle, by=ask.by, now=now, reason=verdict.reason)

    def _settle(
        self, req: Request, status: str, *, by: str | None, now: int, reason: str | None = None
    ) -> str | None:
        """Record the decision and complete the run's approval step with it; returns the
        run to resume, or None when it is not parked on this request."""
        decision = rules.decision(req, status, by=by, now=now, reason=reason)
        self.conn.execute(
            "UPDATE approvals SET status = ?, decision = ?, decided_at = ?, timer_at = NULL"
            " WHERE key = ?",
            (status, decision, now, req.key),
        )
        self._notify(req.key, "resolved", now)
        waiting = self.conn.execute(
            "SELECT 1 FROM runs WHERE id = ? AND status = 'waiting' AND waiting_for = ?",
            (req.run_id, f"approval:{req.key}"),
        ).fetchone()
        if waiting is None:
            return None  # the run is not parked here (cancelled, or parking right now)
        self.conn.execute(
            "UPDATE steps SET status = 'completed', result = ?, finished_at = ?"
            " WHERE run_id = ? AND key = ?",
            (decision, now, req.run_id, req.step_key),
        )
        self.conn.execute(
            "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_for = NULL,"
            " updated_at = ? WHERE id = ?",
            (now, req.run_id),
        )
        return req.run_id

    # -- time -------------------------------------------------------------------------

    def approvals_due(self, now: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Deadlines, escalations and reminders that fell due. Returns (runs to resume,
        (run, error) for runs that fail because their request timed out)."""
        resume: list[str] = []
        fail: list[tuple[str, str]] = []
        keys = [
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM approvals WHERE timer_at IS NOT NULL AND timer_at <= ?"
                + self.dialect.skip_locked,
                (now,),
            ).fetchall()
        ]
        for key in keys:
            req = self._load(key)
            due = rules.on_timers(req, now)
            if due.timed_out:
                self._history(key, now, Entry("timed_out"))
                run_id = self._settle(req, "timed_out", by=None, now=now)
                if due.fail_run:
                    fail.append((req.run_id, f"approval {key} timed out"))
                elif run_id is not None:
                    resume.append(run_id)
                continue
            if due.escalated is not None:
                self.conn.execute(
                    "UPDATE approvals SET approvers = ?, escalate_at = NULL WHERE key = ?",
                    (_json_list(due.approvers), key),
                )
                self._history(
                    key, now, Entry("escalated", value=json.dumps(due.escalated).encode())
                )
                self._notify(key, "escalated", now)
            if due.reminded:
                self._history(key, now, Entry("reminded"))
                self._notify(key, "reminder", now)
            self.conn.execute(
                "UPDATE approvals SET remind_at = ?, timer_at = ? WHERE key = ?",
                (due.remind_at, due.timer_at, key),
            )
        return resume, fail

    # -- ending -----------------------------------------------------------------------

    def forget_approvals(self, run_id: str) -> None:
        """The run is pruned: so are its requests, their history and undelivered events
        (a later run reusing the id must never inherit an old decision)."""
        for (key,) in self.conn.execute(
            "SELECT key FROM approvals WHERE run_id = ?", (run_id,)
        ).fetchall():
            self._delete(key)

    def forget_unfinished_approvals(self, run_id: str) -> None:
        """A retried run asks again for every request whose step did not complete."""
        for (key,) in self.conn.execute(
            "SELECT a.key FROM approvals a JOIN steps s ON s.run_id = a.run_id"
            " AND s.key = a.step_key WHERE a.run_id = ? AND s.status != 'completed'",
            (run_id,),
        ).fetchall():
            self._delete(key)

    def _delete(self, key: str) -> None:
        for table in ("approval_history", "outbox", "approvals"):
            self.conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))

    def cancel_approvals_of(self, run_id: str, now: int) -> None:
        """The run ended (cancelled, failed): its open requests are cancelled with it."""
        for (key,) in self.conn.execute(
            "SELECT key FROM approvals WHERE run_id = ? AND status = 'pending'", (run_id,)
        ).fetchall():
            self._history(key, now, Entry("cancelled", reason="the run ended"))
            self.conn.execute(
                "UPDATE approvals SET status = 'cancelled', decided_at = ?, timer_at = NULL,"
                " decision = ? WHERE key = ?",
                (now, rules.ENDED_WITH_RUN, key),
            )
            self._notify(key, "resolved", now)

    # -- the outbox -------------------------------------------------------------------

    def take_events(self, target: str, now: int, lease_ms: int) -> list[OutboxEvent]:
        rows = self.conn.execute(
            "SELECT o.id, o.body, o.attempts FROM outbox o WHERE o.target = ?"
            " AND o.delivered_at IS NULL AND o.next_at <= ? AND o.seq = (SELECT MIN(seq)"
            " FROM outbox WHERE key = o.key AND target = o.target AND delivered_at IS NULL)"
            " ORDER BY o.seq LIMIT 100" + self.dialect.skip_locked,
            (target, now),
        ).fetchall()
        for event_id, _body, _attempts in rows:
            self.conn.execute(
                "UPDATE outbox SET next_at = ? WHERE id = ? AND target = ?",
                (now + lease_ms, event_id, target),
            )
        return [OutboxEvent(r[0], bytes(r[1]), r[2]) for r in rows]

    def mark_delivered(self, target: str, event_id: str, now: int) -> None:
        """Once: a second deliverer of the same event (its lease ran out) changes nothing."""
        marked = self.conn.execute(
            "UPDATE outbox SET delivered_at = ? WHERE id = ? AND target = ?"
            " AND delivered_at IS NULL",
            (now, event_id, target),
        )
        key, n = event_id.rsplit("#", 1)
        if n == "1" and marked.rowcount == 1:  # `requested` reached people: history says so
            self._history(key, now, Entry("notified", reason=target))

    def mark_failed(self, target: str, event_id: str, error: str, next_at: int) -> None:
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ?"
            " WHERE id = ? AND target = ?",
            (error, next_at, event_id, target),
        )

    def _notify(self, key: str, kind: str, now: int) -> None:
        """Append an ApprovalEvent to the outbox. Its id is stable: `<key>#<n>`."""
        targets, links = self.events.targets, self.events.links
        if not targets:
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
        approvers = json.loads(row[6]) if row[6] else None
        signed = (
            links(key, approvers, row[10], row[11])
            if links is not None and kind != "resolved"
            else None
        )
        body = msgspec.json.encode(
            {
                "id": event_id, "type": kind, "at": iso(now), "key": key, "run_id": row[0],
                "workflow": row[1], "step": row[2], "status": row[3], "summary": row[4],
                "data": msgspec.Raw(row[5]), "approvers": approvers,
                "required": row[7], "approved_by": json.loads(row[8]),
                "decision": decision_object(row[9]),
                "deadline_at": iso(row[10]), "links": signed,
            }
        )  # fmt: skip
        for target in targets:
            seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0]
            self.conn.execute(
                "INSERT INTO outbox (id, target, seq, key, body, next_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, target, seq, key, body, now),
            )

    # -- API tokens -------------------------------------------------------------------

    def create_token(self, name: str, scopes: Sequence[str], now: int) -> str:
        """Only the token's SHA-256 is stored: a copy of the database lets nobody in."""
        if self.conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
            raise NotAllowed(
                f"a token named {name!r} already exists; revoke it first"
                f" (`tako tokens revoke {name}`)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.conn.execute(
            "INSERT INTO tokens (name, hash, scopes, created_at) VALUES (?, ?, ?, ?)",
            (name, hash_token(token), json.dumps(list(dict.fromkeys(scopes))), now),
        )
        return token

    def revoke_token(self, name: str) -> None:
        if self.conn.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 0:
            raise TokenNotFound(f"no token named {name!r} (see `tako tokens list`)")

    # -- helpers ----------------------------------------------------------------------

    def _load(self, key: str) -> Request:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE key = ?{self.dialect.lock}", (key,)
        ).fetchone()
        if row is None:
            raise ApprovalNotFound(f"no approval request with key {key!r} (see `tako approvals`)")
        fields: dict[str, Any] = dict(
            zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True)
        )
        for name in ("approvers", "escalate_to", "approved_by"):
            fields[name] = json.loads(fields[name]) if fields[name] is not None else None
        for name in ("data", "value", "decision"):
            fields[name] = None if fields[name] is None else bytes(fields[name])
        return Request(**fields)

    def _history(self, key: str, now: int, entry: Entry) -> None:
        self.conn.execute(
            "INSERT INTO approval_history (key, at, event, actor, value, original, reason,"
            " decision_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, now, *entry),
        )


def _json_list(items: list[str] | None) -> str | None:
    return None if items is None else json.dumps(items)
