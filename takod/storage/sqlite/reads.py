"""The SQLite backend's read views, on a read-only connection (WAL: never blocks the writer).

Each returns the objects clients receive (`RunView`, `ApprovalView`): raw JSON
values as stored, moments as ISO 8601 text. The same class serves the
supervisor and the CLI's reads while the supervisor is down.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Generic, TypeVar

import msgspec

from tako._errors import ApprovalNotFound, RunNotFound, Unauthorized
from tako._protocol import readable_json
from tako._records import NULL, ApprovalView, ChildRun, HistoryView, RunView, StepView, iso
from tako._replies import ScheduleRow, SupervisorRow, TokenRow
from tako.takod.rules.approvals import digest
from tako.takod.storage.interface import Identity, LinkFields, OutboxEvent, StoreCounts
from tako.takod.storage.sqlite.portable import Conn

C = TypeVar("C", bound=Conn)
RUN_COLUMNS = (
    "id, workflow, status, payload, result, error, traceback, attempts, max_attempts,"
    " created_at, updated_at, wake_at, waiting_for, cancel_requested, parent_run_id"
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def decision_object(raw: bytes | None) -> dict[str, Any] | None:
    """A stored decision as clients see it (decided_at as ISO 8601)."""
    if raw is None:
        return None
    decided: dict[str, Any] = json.loads(raw)
    if "decided_at" in decided:
        decided["decided_at"] = iso(decided["decided_at"])
    return decided


def _raw(value: bytes | None) -> msgspec.Raw:
    return readable_json(value) if value is not None else NULL


def run_view(
    row: Any, steps: list[Any] | None = None, children: list[Any] | None = None
) -> RunView:
    view = RunView(
        run_id=row["id"],
        workflow=row["workflow"],
        status=row["status"],
        payload=readable_json(row["payload"]),
        result=_raw(row["result"]),
        error=row["error"],
        traceback=row["traceback"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at=iso(row["created_at"]) or "",
        updated_at=iso(row["updated_at"]) or "",
        wake_at=iso(row["wake_at"]),
        waiting_for=row["waiting_for"],
        cancel_requested=bool(row["cancel_requested"]),
        steps=msgspec.UNSET
        if steps is None
        else [
            StepView(
                key=s["key"],
                name=s["name"],
                kind=s["kind"],
                status=s["status"],
                result=_raw(s["result"]),
                error=s["error"],
                attempts=s["attempts"],
                started_at=iso(s["started_at"]),
                finished_at=iso(s["finished_at"]),
                wake_at=iso(s["wake_at"]),
            )
            for s in steps
        ],
    )
    if row["parent_run_id"] is not None:
        view.parent_run_id = row["parent_run_id"]
    if children:
        view.children = [ChildRun(run_id=c[0], workflow=c[1], status=c[2]) for c in children]
    return view


def approval_view(row: Any, history: list[Any] | None = None) -> ApprovalView:
    """The approval object; `history` only for `show`."""
    return ApprovalView(
        key=row["key"],
        run_id=row["run_id"],
        workflow=row["workflow"],
        step=row["step_key"],
        status=row["status"],
        summary=row["summary"],
        data=readable_json(row["data"]),
        value=readable_json(row["value"]),
        digest=digest(row["value"]),
        schema=_raw(row["schema"]),
        approvers=json.loads(row["approvers"]) if row["approvers"] is not None else None,
        required=row["required"],
        approved_by=json.loads(row["approved_by"]),
        decision=decision_object(row["decision"]),
        created_at=iso(row["created_at"]) or "",
        deadline_at=iso(row["deadline_at"]),
        history=msgspec.UNSET
        if history is None
        else [
            HistoryView(
                at=iso(h["at"]) or "",
                event=h["event"],
                actor=h["actor"],
                value=_raw(h["value"]),
                original=_raw(h["original"]),
                reason=h["reason"],
            )
            for h in history
        ],
    )


class SqlReads(Generic[C]):
    """The backends' `Reads` on one read-only connection whose rows read by name."""

    def __init__(self, conn: C) -> None:
        self.conn = conn

    def run(self, run_id: str, *, steps: bool = True) -> RunView:
        row = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        if not steps:
            return run_view(row)
        step_rows = self.conn.execute(
            "SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        children = self.conn.execute(
            "SELECT id, workflow, status FROM runs WHERE parent_run_id = ? ORDER BY created_at, id",
            (run_id,),
        ).fetchall()
        return run_view(row, step_rows, children)

    def runs(self, *, status: str | None, workflow: str | None, limit: int) -> list[RunView]:
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if workflow:
            where.append("workflow = ?")
            args.append(workflow)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [run_view(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
        return {status: n for status, n in rows}

    def store_counts(self) -> StoreCounts:
        runs = self.conn.execute("SELECT workflow, status, COUNT(*) FROM runs GROUP BY 1, 2")
        pending, overdue = self.conn.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM approval_history h"
            " WHERE h.key = a.key AND h.event IN ('reminded', 'escalated')))"
            " FROM approvals a WHERE status = 'pending'"
        ).fetchone()
        (backlog,) = self.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"
        ).fetchone()
        return StoreCounts({(w, s): n for w, s, n in runs}, pending, overdue, backlog)

    def busy(self, now: int, limit: int = 10) -> list[str]:
        """Runs a worker holds or could take now (running, or pending and due): what a
        test with a moved clock waits out before it looks or moves the clock again."""
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE status = 'running'"
            " OR (status = 'pending' AND (wake_at IS NULL OR wake_at <= ?)) LIMIT ?",
            (now, limit),
        )
        return [row[0] for row in rows]

    def next_wake(self) -> int | None:
        """Each MIN reads one partial index."""
        row = self.conn.execute(
            "SELECT MIN(t) FROM (SELECT MIN(wake_at) AS t FROM runs WHERE wake_at IS NOT NULL"
            " UNION ALL SELECT MIN(deadline_at) FROM runs WHERE deadline_at IS NOT NULL"
            " UNION ALL SELECT MIN(timer_at) FROM approvals WHERE timer_at IS NOT NULL"
            " UNION ALL SELECT MIN(next_at) FROM schedules) AS due"
        ).fetchone()
        return None if row is None else row[0]

    def approval(self, key: str) -> ApprovalView:
        row = self.conn.execute("SELECT * FROM approvals WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise ApprovalNotFound(f"no approval request with key {key!r} (see `tako approvals`)")
        history = self.conn.execute(
            "SELECT * FROM approval_history WHERE key = ? ORDER BY id", (key,)
        ).fetchall()
        return approval_view(row, history)

    def approvals(
        self,
        *,
        approver: str | None = None,
        workflow: str | None = None,
        status: str | None = "pending",
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ApprovalView]:
        """Requests oldest first; with `approver`, only those that actor may decide."""
        where, args = [], []
        for column, value in (("status", status), ("workflow", workflow), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        out = []
        for row in self.conn.execute(
            f"SELECT * FROM approvals {clause} ORDER BY created_at, key", args
        ):
            may = row["approvers"] is None or approver in json.loads(row["approvers"])
            if approver is not None and not may:
                continue
            out.append(approval_view(row))
            if len(out) >= limit:
                break
        return out

    def link_fields(self, key: str) -> LinkFields:
        row = self.conn.execute(
            "SELECT approvers, deadline_at, created_at FROM approvals WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise ApprovalNotFound(f"no approval request with key {key!r} (see `tako approvals`)")
        approvers = json.loads(row[0]) if row[0] is not None else None
        return LinkFields(approvers, row[1], row[2])

    def due_events(self, target: str, now: int) -> list[OutboxEvent]:
        rows = self.conn.execute(
            "SELECT o.id, o.body, o.attempts FROM outbox o WHERE o.target = ?"
            " AND o.delivered_at IS NULL AND o.next_at <= ? AND o.seq = (SELECT MIN(seq)"
            " FROM outbox WHERE key = o.key AND target = o.target AND delivered_at IS NULL)"
            " ORDER BY o.seq LIMIT 100",
            (target, now),
        ).fetchall()
        return [OutboxEvent(r[0], bytes(r[1]), r[2]) for r in rows]

    def next_attempt(self, target: str) -> int | None:
        row = self.conn.execute(
            "SELECT MIN(next_at) FROM outbox WHERE target = ? AND delivered_at IS NULL",
            (target,),
        ).fetchone()
        return None if row is None else row[0]

    def tokens(self) -> list[TokenRow]:
        rows = self.conn.execute("SELECT name, scopes, created_at FROM tokens ORDER BY name")
        return [
            TokenRow(name=n, scopes=json.loads(s), created_at=iso(at) or "") for n, s, at in rows
        ]

    def supervisors(self, now: int, lease_ms: int) -> list[SupervisorRow]:
        rows = self.conn.execute(
            "SELECT host, pid, workers, started_at FROM supervisors WHERE heartbeat_at > ?"
            " ORDER BY started_at, id",
            (now - lease_ms,),
        ).fetchall()
        return [
            SupervisorRow(host=r[0], pid=r[1], workers=r[2], since=iso(r[3]) or "") for r in rows
        ]

    def schedules(self) -> list[ScheduleRow]:
        rows = self.conn.execute(
            "SELECT workflow, expression, timezone, catch_up, next_at, last_tick FROM schedules"
            " ORDER BY next_at, workflow"
        ).fetchall()
        return [
            ScheduleRow(
                workflow=r[0],
                schedule=r[1],
                timezone=r[2],
                catch_up=r[3],
                next_tick=iso(r[4]) or "",
                last_tick=iso(r[5]),
            )
            for r in rows
        ]

    def token_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])

    def identify(self, token: str) -> Identity:
        """Looked up by its hash, so the comparison never touches the token's own bytes."""
        row = self.conn.execute(
            "SELECT name, scopes FROM tokens WHERE hash = ?", (hash_token(token),)
        ).fetchone()
        if row is None:
            raise Unauthorized("this token is not valid (unknown or revoked)")
        return Identity(str(row[0]), json.loads(row[1]))
