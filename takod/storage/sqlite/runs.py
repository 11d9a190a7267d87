"""The SQLite backend's writes on runs, steps, waits and kept signals.

Every method runs on the committer's thread inside the transaction it opened
for a whole batch (group commit, see committer.py); none commits by itself.
What a park becomes, when a run retries and what a cancel does are decided by
`takod.rules`; this module fetches the facts and writes the outcome.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence

import msgspec

from tako._errors import RunNotFound, StaleClaim
from tako._protocol import Assign, Finish, MemoEntry, Park, StepDone
from tako.takod.rules import runs as rules
from tako.takod.rules.runs import FINISHED, Outcome, RunStatus
from tako.takod.storage.interface import (
    WAKE_BATCH,
    ApprovalEvents,
    Created,
    Due,
    Hold,
    Limits,
    NewRun,
    Parked,
    ParkOutcome,
    Requeued,
    SchemaCheck,
    StepSaved,
)
from tako.takod.storage.sqlite.approvals import C
from tako.takod.storage.sqlite.portable import SQLITE, Dialect
from tako.takod.storage.sqlite.schedules import ScheduleWrites
from tako.takod.storage.sqlite.signals import SignalWrites, named
from tako.takod.storage.sqlite.steps import UPSERT_STEP, save_step_if_held, save_step_params

CHUNK = 500  # ids per statement: well within both databases' limits on parameters


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def new_run_id(now_ms: int) -> str:
    """An opaque id that sorts by creation time: 'r_' + 12 hex digits of ms + 8 random."""
    return f"r_{now_ms:012x}{secrets.token_hex(4)}"


class SqlTx(SignalWrites[C], ScheduleWrites[C]):
    """The backends' `Tx`: typed writes on one writer connection (SQLite's, or
    PostgreSQL's through takod/storage/postgres). Not thread-safe: the committer's
    thread is the only one that calls it."""

    def __init__(self, conn: C, events: ApprovalEvents, dialect: Dialect = SQLITE) -> None:
        super().__init__(conn, events, dialect)
        self._save_sql = save_step_if_held(dialect)

    # -- runs -------------------------------------------------------------------------

    def create_run(self, new: NewRun, now: int) -> Created:
        rid = new.run_id or new_run_id(now)
        wake_at = now + new.delay_ms if new.delay_ms else None
        deadline = now + new.timeout_ms if new.timeout_ms else None
        row = (rid, new.workflow, new.payload, new.max_attempts, wake_at, deadline, now, now)
        cur = self.conn.execute(
            "INSERT INTO runs (id, workflow, status, payload, max_attempts, wake_at, deadline_at,"
            " created_at, updated_at, traceparent, parent_run_id, parent_step)"
            " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (*row, new.traceparent, new.parent_run_id, new.parent_step),
        )
        if cur.rowcount == 1:
            return Created(rid, RunStatus.PENDING, False)
        row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()
        return Created(rid, row[0], True)

    def claim(
        self,
        run_ids: Sequence[str],
        now: int,
        hold: Hold | None = None,
        owner: int | None = None,
        limits: Limits | None = None,
    ) -> list[Assign]:
        """A few statements for the lot, however many: a crowd of runs woken at once
        is claimed without a round trip per run."""
        out: list[Assign] = []
        for ids in _chunks(list(dict.fromkeys(run_ids))):
            keyed: Mapping[str, int] = {}
            if limits:
                ids = self.within_limits(ids, now, limits)
                keyed = limits.keys
            out += self._claim_some(ids, now, hold, owner, keyed)
        return out

    def _claim_some(
        self,
        ids: list[str],
        now: int,
        hold: Hold | None,
        owner: int | None,
        keyed: Mapping[str, int],
    ) -> list[Assign]:
        if hold is not None:
            marks = ", ".join("?" * len(ids))
            for rid, workflow in self.conn.execute(
                f"SELECT id, workflow FROM runs WHERE id IN ({marks})", ids
            ).fetchall():
                reason = hold(workflow)
                if reason is not None:  # its file failed to load: it waits, saying why
                    self.conn.execute(
                        "UPDATE runs SET error = ?, updated_at = ?"
                        " WHERE id = ? AND status = 'pending'",
                        (reason, now, rid),
                    )
                    ids = [i for i in ids if i != rid]
            if not ids:
                return []
        marks = ", ".join("?" * len(ids))
        claimed = {
            row[0]: row
            for row in self.conn.execute(
                "UPDATE runs SET status = 'running', claim_token = claim_token + 1, owner = ?,"
                " updated_at = ?, wake_at = NULL, error = CASE WHEN attempts > 1 THEN error END"
                f" WHERE id IN ({marks}) AND status = 'pending'"
                " AND (wake_at IS NULL OR wake_at <= ?)"
                " RETURNING id, workflow, payload, attempts, claim_token, traceparent,"
                " concurrency_key",
                (owner, now, *ids, now),
            ).fetchall()
        }
        if not claimed:
            return []
        memos: dict[str, list[MemoEntry]] = {rid: [] for rid in claimed}
        marks = ", ".join("?" * len(claimed))
        for rid, key, status, result, error, attempts, kind in self.conn.execute(
            "SELECT run_id, key, status, result, error, attempts, kind FROM steps"
            f" WHERE run_id IN ({marks})",
            list(claimed),
        ):
            memos[rid].append(
                MemoEntry(key, status, msgspec.Raw(result or b"null"), error, attempts, kind)
            )
        return [
            Assign(
                rid,
                row[1],
                msgspec.Raw(row[2]),
                row[3],
                row[4],
                memos[rid],
                row[5],
                now,
                keyed=row[6] is None and row[1] in keyed,
            )
            for rid in ids
            if (row := claimed.get(rid)) is not None
        ]

    def save_step(self, step: StepDone, now: int, release: bool = False) -> StepSaved:
        """Atomic by itself, so the committer runs it without a savepoint of its own (this
        is the hottest write): the common case is one statement that saves the step only
        if the worker still holds the run; anything else runs in a savepoint here."""
        started, finished = step.started_at or now, step.finished_at or now
        if not release:
            saved = self.conn.execute(self._save_sql, save_step_params(step, now))
            if saved.rowcount == 1:
                return StepSaved.SAVED
        with self.savepoint():
            cancel = self._check_claim(step.run_id, step.token)
            self._upsert_step(
                step, step.kind, step.status, bytes(step.result), step.error, step.attempts,
                started, finished, None,
            )  # fmt: skip
            if cancel:
                self._cancel_now(step.run_id, now)
                return StepSaved.CANCELLED
            if release:
                self.release(step.run_id, step.token, now)
                return StepSaved.RELEASED
            return StepSaved.SAVED

    def park(self, park: Park, now: int, check: SchemaCheck, child: NewRun | None = None) -> Parked:
        """Park a run, in one transaction; or answer the step at once when nothing needs
        waiting for (a sleep already due, a kept signal the run consumes now, a request
        decided while the run was away)."""
        if self._check_claim(park.run_id, park.token):
            self._cancel_now(park.run_id, now)
            return Parked(ParkOutcome.CANCELLED)
        found: bytes | None = None
        waiting_for: str | None = None
        schema: str | None = None
        started: str | None = None
        if park.kind == "child":
            assert park.child is not None and child is not None
            started, found = self.start_child(park, child, now)
            if not park.child.wait:  # start_child: the step's result is the child's id
                found = msgspec.json.encode(started)
            waiting_for = f"run:{started}"
        elif park.kind == "approval":
            assert park.approval is not None
            waiting_for = f"approval:{park.run_id}:{park.key}"
            found = self.create_approval(park.run_id, park.key, park.approval, now)
        elif park.kind == "wait":
            events = park.events or [park.event or ""]
            waiting_for = " or ".join(events)
            schema = bytes(park.schema).decode() if bytes(park.schema) != b"null" else None
            kept = self._take_kept_signal(events, park.run_id, schema, now, check)
            if kept is not None:
                found = kept[1] if park.events is None else named(*kept)
        wake_at = park.wake_at if park.kind != "approval" else None
        plan = rules.on_park(
            park.kind, now=now, wake_at=wake_at, found=found, waiting_for=waiting_for
        )
        kind: str = "run" if park.kind == "retry" else park.kind
        if park.events is not None:
            kind = "wait_any"  # its result names the event: never replayed as a wait_for's
        elif park.child is not None:
            kind = "invoke" if park.child.wait else "child"
        error = park.error if park.kind == "retry" else None
        attempts = park.attempts if park.kind == "retry" else 1
        finished = now if plan.run_status is None else None
        self._upsert_step(
            park, kind, plan.step_status, plan.result, error, attempts,
            park.started_at or now, finished, plan.wake_at,
        )  # fmt: skip
        if plan.run_status is None:
            return Parked(ParkOutcome.GO_ON, plan.result, started)
        if park.kind == "wait":
            self.conn.execute("DELETE FROM waits WHERE run_id = ?", (park.run_id,))
            any_of = int(park.events is not None)
            for event in dict.fromkeys(park.events or [park.event or ""]):
                self.conn.execute(
                    "INSERT INTO waits (run_id, event, step_key, schema, any_of)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (park.run_id, event, park.key, schema, any_of),
                )
        self.conn.execute(
            "UPDATE runs SET status = ?, wake_at = ?, waiting_for = ?, updated_at = ? WHERE id = ?",
            (plan.run_status, plan.wake_at, plan.waiting_for, now, park.run_id),
        )
        return Parked(ParkOutcome.PARKED, started=started)

    def finish(self, finish: Finish, now: int) -> Outcome:
        if self._check_claim(finish.run_id, finish.token) and finish.outcome != "completed":
            self._cancel_now(finish.run_id, now)
            return Outcome(RunStatus.CANCELLED, 0)
        attempts, max_attempts = self.conn.execute(
            "SELECT attempts, max_attempts FROM runs WHERE id = ?", (finish.run_id,)
        ).fetchone()
        decision = rules.on_handler_end(
            finish.outcome, attempts=attempts, max_attempts=max_attempts, now_ms=now
        )
        if decision.status == RunStatus.PENDING:
            self._drop_unfinished_steps(finish.run_id)
            self.conn.execute(
                "UPDATE runs SET status = 'pending', attempts = ?, wake_at = ?, error = ?,"
                " traceback = ?, updated_at = ? WHERE id = ?",
                (
                    decision.attempts, decision.wake_at, finish.error, finish.traceback, now,
                    finish.run_id,
                ),
            )  # fmt: skip
        else:
            completed = decision.status == RunStatus.COMPLETED
            parent = self._finish_run(
                finish.run_id, decision.status, now,
                result=bytes(finish.result) if completed else None,
                error=finish.error, traceback=finish.traceback,
            )  # fmt: skip
            if parent is not None:
                return msgspec.structs.replace(decision, parent=parent)
        return decision

    def requeue_lost(
        self, run_ids: Sequence[str], *, alone: bool, reason: str, now: int
    ) -> Requeued:
        requeued: list[str] = []
        failed: list[str] = []
        for rid in run_ids:
            row = self.conn.execute(
                "SELECT attempts, max_attempts FROM runs WHERE id = ? AND status = 'running'",
                (rid,),
            ).fetchone()
            if row is None:
                continue
            decision = rules.on_worker_crash(alone=alone, attempts=row[0], max_attempts=row[1])
            if decision.status == RunStatus.FAILED:
                self._finish_run(rid, RunStatus.FAILED, now, error=reason)
                failed.append(rid)
                continue
            self.conn.execute(
                "UPDATE runs SET status = 'pending', attempts = ?,"
                " claim_token = claim_token + 1, updated_at = ? WHERE id = ?",
                (decision.attempts, now, rid),
            )
            requeued.append(rid)
        return Requeued(requeued, failed)

    def release(self, run_id: str, token: int, now: int) -> None:
        self.conn.execute(
            "UPDATE runs SET status = 'pending', claim_token = claim_token + 1, updated_at = ?"
            " WHERE id = ? AND claim_token = ? AND status = 'running'",
            (now, run_id, token),
        )

    def recover(self, now: int, lease_ms: int | None = None) -> list[str]:
        requeue = (
            "UPDATE runs SET status = 'pending', claim_token = claim_token + 1, updated_at = ?"
            " WHERE status = 'running'"
        )
        if lease_ms is None:  # the store's one supervisor is starting: the rest is history
            rows = self.conn.execute(requeue + " RETURNING id", (now,)).fetchall()
            self.conn.execute("DELETE FROM supervisors WHERE heartbeat_at < ?", (now,))
            return [r[0] for r in rows]
        silent_since = now - lease_ms
        rows = self.conn.execute(
            requeue + " AND (owner IS NULL OR owner NOT IN"
            " (SELECT id FROM supervisors WHERE heartbeat_at > ?)) RETURNING id",
            (now, silent_since),
        ).fetchall()
        self.conn.execute("DELETE FROM supervisors WHERE heartbeat_at <= ?", (silent_since,))
        return [r[0] for r in rows]

    def release_orphans(
        self, owner: int, held: Collection[str], claimed_before: int, now: int
    ) -> list[str]:
        rows = self.conn.execute(
            "SELECT id, claim_token FROM runs WHERE status = 'running' AND owner = ?"
            " AND updated_at < ?",
            (owner, claimed_before),
        ).fetchall()
        released = []
        for rid, token in rows:
            if rid not in held:
                self.release(rid, token, now)
                released.append(rid)
        return released

    def join(self, host: str, pid: int, now: int) -> int:
        row = self.conn.execute(
            "INSERT INTO supervisors (host, pid, workers, started_at, heartbeat_at)"
            " VALUES (?, ?, 0, ?, ?) RETURNING id",
            (host, pid, now, now),
        ).fetchone()
        return int(row[0])

    def heartbeat(self, supervisor: int, workers: int, now: int) -> bool:
        renewed = self.conn.execute(
            "UPDATE supervisors SET heartbeat_at = ?, workers = ? WHERE id = ?",
            (now, workers, supervisor),
        )
        return bool(renewed.rowcount == 1)

    def leave(self, supervisor: int) -> None:
        self.conn.execute("DELETE FROM supervisors WHERE id = ?", (supervisor,))

    def ready_runs(self, now: int, limit: int = 100_000) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE status = 'pending' AND (wake_at IS NULL OR wake_at <= ?)"
            " ORDER BY created_at LIMIT ?",
            (now, limit),
        )
        return [r[0] for r in rows]

    def cancel(self, run_id: str, reason: str | None, now: int) -> RunStatus:
        status = rules.on_cancel(run_id, self._status(run_id))
        reason = reason or "cancelled"
        if status == RunStatus.RUNNING:  # it stops at its next step boundary
            self.conn.execute(
                "UPDATE runs SET cancel_requested = 1, error = ?, updated_at = ? WHERE id = ?",
                (reason, now, run_id),
            )
            self.cancel_children(run_id, now)
            return status
        self._finish_run(run_id, RunStatus.CANCELLED, now, error=reason)
        return status

    def retry(self, run_id: str, now: int, timeout_ms: int | None = None) -> None:
        rules.check_retry(run_id, self._status(run_id))
        self._drop_unfinished_steps(run_id)
        self.conn.execute(
            "UPDATE runs SET status = 'pending', attempts = 1, error = NULL,"
            " traceback = NULL, result = NULL, finished_at = NULL, cancel_requested = 0,"
            " wake_at = NULL, deadline_at = ?, updated_at = ? WHERE id = ?",
            (now + timeout_ms if timeout_ms else None, now, run_id),
        )

    # -- the timer ----------------------------------------------------------------------

    def wake_due(self, now: int, limit: int = WAKE_BATCH) -> Due:
        """At most `limit` sleepers at a time, earliest first, so that a crowd due at one
        instant is woken in transactions short enough for its first runs to get going
        (and other writes to get in) while the rest are woken; the scheduler calls
        again while anything is due."""
        expired = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE deadline_at IS NOT NULL AND deadline_at <= ?"
                + self.dialect.skip_locked,
                (now,),
            ).fetchall()
        ]
        for rid in expired:
            self._finish_run(rid, RunStatus.FAILED, now, error="timeout")
        failures = [(rid, "timeout") for rid in expired]
        ready, failed = self.approvals_due(now)
        for rid, error in failed:
            self._finish_run(rid, RunStatus.FAILED, now, error=error)
        failures += failed
        due = self.conn.execute(
            "SELECT id, status FROM runs WHERE wake_at IS NOT NULL AND wake_at <= ?"
            " AND status IN ('pending', 'sleeping', 'waiting') ORDER BY wake_at LIMIT ?"
            + self.dialect.skip_locked,
            (now, limit),
        ).fetchall()
        sleeping = [rid for rid, status in due if status == RunStatus.SLEEPING]
        for ids in _chunks(sleeping):  # a sleep ends; a retry backoff is over
            marks = ", ".join("?" * len(ids))
            self.conn.execute(
                "UPDATE steps SET status = CASE kind WHEN 'sleep' THEN 'completed'"
                " ELSE status END, result = CASE kind WHEN 'sleep' THEN ? ELSE result END,"
                " finished_at = CASE kind WHEN 'sleep' THEN ? ELSE NULL END,"
                f" wake_at = NULL WHERE run_id IN ({marks}) AND status IN ('sleeping', 'running')",
                (rules.NULL, now, *ids),
            )
        for rid, status in due:
            if status == RunStatus.WAITING:  # a wait times out with None
                key = self.conn.execute(
                    "SELECT step_key FROM waits WHERE run_id = ?", (rid,)
                ).fetchone()
                if key is not None:
                    self._resume_waiter(rid, key[0], b"null", now)
                    self.conn.execute(
                        "UPDATE steps SET error = 'timed out' WHERE run_id = ? AND key = ?",
                        (rid, key[0]),
                    )
        woken = [rid for rid, _status in due]
        for ids in _chunks(woken):
            marks = ", ".join("?" * len(ids))
            self.conn.execute(
                "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_for = NULL,"
                f" updated_at = ? WHERE id IN ({marks})",
                (now, *ids),
            )
        ready += woken
        ready += self.due_ticks(now)  # cron: the runs of the ticks due
        return Due(ready, failures)

    def prune(self, before: int) -> int:
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?", (before,)
            ).fetchall()
        ]
        for rid in ids:
            self.conn.execute("DELETE FROM steps WHERE run_id = ?", (rid,))
            self.forget_approvals(rid)
            self.conn.execute("DELETE FROM runs WHERE id = ?", (rid,))
        self.conn.execute("DELETE FROM signals WHERE expires_at <= ?", (before,))
        return len(ids)

    def expire_signals(self, now: int) -> None:
        self.conn.execute("DELETE FROM signals WHERE expires_at <= ?", (now,))

    # -- helpers ------------------------------------------------------------------------

    def _check_claim(self, run_id: str, token: int) -> int:
        """Refuse a write from a worker that no longer holds the run; return cancel_requested."""
        row = self.conn.execute(
            "SELECT cancel_requested FROM runs WHERE id = ? AND claim_token = ?"
            " AND status = 'running'" + self.dialect.lock,
            (run_id, token),
        ).fetchone()
        if row is None:
            raise StaleClaim(f"run {run_id} is no longer held by this worker (token {token})")
        return int(row[0])

    def _status(self, run_id: str) -> RunStatus:
        row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return RunStatus(row[0])

    def _cancel_now(self, run_id: str, now: int) -> None:
        """A cancel was requested while the run was running: it ends here, with the reason
        the cancel gave (kept in its error meanwhile)."""
        row = self.conn.execute("SELECT error FROM runs WHERE id = ?", (run_id,)).fetchone()
        self._finish_run(run_id, RunStatus.CANCELLED, now, error=str(row[0] or "cancelled"))

    def _upsert_step(
        self,
        msg: StepDone | Park,
        kind: str,
        status: str,
        result: bytes | None,
        error: str | None,
        attempts: int,
        started: int,
        finished: int | None,
        wake_at: int | None,
    ) -> None:
        self.conn.execute(
            UPSERT_STEP,
            (
                msg.run_id, msg.key, msg.name, kind, status, result, error, attempts, msg.seq,
                started, finished, wake_at,
            ),
        )  # fmt: skip

    def _drop_unfinished_steps(self, run_id: str) -> None:
        """Steps that did not finish run again; so approvals that were not decided by
        someone (cancelled with the run, say) are asked again, not replayed."""
        self.forget_unfinished_approvals(run_id)
        self.conn.execute("DELETE FROM steps WHERE run_id = ? AND status != 'completed'", (run_id,))
        self.conn.execute("DELETE FROM waits WHERE run_id = ?", (run_id,))

    def _finish_run(
        self,
        run_id: str,
        status: RunStatus,
        now: int,
        *,
        result: bytes | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> str | None:
        """End the run; returns its parent if that was waiting for it (now due)."""
        assert status in FINISHED
        self.conn.execute("DELETE FROM waits WHERE run_id = ?", (run_id,))
        if status != RunStatus.COMPLETED:
            self.cancel_approvals_of(run_id, now)
        ended = self.conn.execute(
            "UPDATE runs SET status = ?, result = ?, error = ?, traceback = ?, wake_at = NULL,"
            " deadline_at = NULL, waiting_for = NULL, cancel_requested = 0,"
            " claim_token = claim_token + 1, updated_at = ?, finished_at = ? WHERE id = ?"
            " RETURNING parent_run_id, parent_step",
            (status, result, error, traceback, now, now, run_id),
        ).fetchone()
        if status == RunStatus.CANCELLED:
            self.cancel_children(run_id, now)
        if ended is None or ended[1] is None:  # no parent's step waits for it
            return None
        return self.child_ended(run_id, ended[0], ended[1], (status, result, error), now)
