"""runs.db: the only place run state lives, and the only code that speaks SQL.

Write methods run on the committer's thread inside a transaction that the
committer opens and commits for a whole batch (group commit, see
`committer.py`); they never commit themselves. Read methods use a separate
read-only connection. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from tako._errors import InvalidRequest, NotAllowed, RunNotFound, StaleClaim, TakoError
from tako._protocol import NULL, Assign, Finish, MemoEntry, Park, StepDone, readable_json
from takod.approvals import ApprovalStore
from takod.transitions import (
    CANCELLABLE,
    FINISHED,
    RETRYABLE,
    Outcome,
    RunStatus,
    on_handler_end,
    on_worker_crash,
)

STEP_SAVED, STEP_CANCELLED, STEP_RELEASED = "saved", "cancelled", "released"
WAKE_BATCH = 2000  # sleepers woken per transaction
_STEP_COLUMNS = (
    "run_id, key, name, kind, status, result, error, attempts, seq, started_at, finished_at,"
    " wake_at"
)
_STEP_CONFLICT = (
    " ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status,"
    " result = excluded.result, error = excluded.error, attempts = excluded.attempts,"
    " finished_at = excluded.finished_at, wake_at = excluded.wake_at"
)
# A checkpoint from the worker that holds the run, of a run nobody asked to cancel.
_SAVE_STEP_IF_HELD = (
    f"INSERT INTO steps ({_STEP_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL"
    " WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND claim_token = ?"
    " AND status = 'running' AND cancel_requested = 0)" + _STEP_CONFLICT
)
CANCELLED = b"cancelled"  # park()'s answer for a run whose cancel was requested (not JSON)
SQLITE_HEADER = b"SQLite format 3\x00"
APPLICATION_ID = 0x74616B6F  # "tako": marks a file as ours, so we never write to a stranger's
SchemaCheck = Callable[[str, bytes], str | None]


class StoreError(TakoError):
    """runs.db cannot be used."""

    code = "storage"


def migrations() -> list[str]:
    """The numbered migration scripts, in order."""
    folder = resources.files("takod") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(folder / name).read_text() for name in names]


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def new_run_id(now_ms: int) -> str:
    """An opaque id that sorts by creation time: 'r_' + 12 hex digits of ms + 8 random."""
    return f"r_{now_ms:012x}{secrets.token_hex(4)}"


class Store:
    """Typed operations on one runs.db. Not thread-safe: one writer thread at a time."""

    def __init__(
        self, path: Path, *, durability: str = "full", targets: tuple[str, ...] = ()
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_foreign_file(path)
        self.conn = _connect(path)
        try:
            _prepare(self.conn, durability)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(
                f"{path} is not a usable tako database ({exc}); it was left untouched. "
                "Move it away or point --data-dir elsewhere."
            ) from None
        self._reader: sqlite3.Connection | None = None
        self.approvals = ApprovalStore(self.conn, targets=targets)

    def close(self) -> None:
        # the reader first: the writer, closing last, checkpoints the WAL and removes it
        if self._reader is not None:
            self._reader.close()
        self.conn.close()

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = open_read_only(self.path)
        return self._reader

    # -- runs ---------------------------------------------------------------------

    def create_run(
        self,
        *,
        workflow: str,
        payload: bytes,
        max_attempts: int,
        now: int,
        run_id: str | None = None,
        delay_ms: int | None = None,
        timeout_ms: int | None = None,
    ) -> tuple[str, str, bool]:
        """Insert a pending run; return (run_id, status, deduplicated)."""
        rid = run_id or new_run_id(now)
        wake_at = now + delay_ms if delay_ms else None
        deadline = now + timeout_ms if timeout_ms else None
        cur = self.conn.execute(
            "INSERT INTO runs (id, workflow, status, payload, max_attempts, wake_at, deadline_at,"
            " created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (rid, workflow, payload, max_attempts, wake_at, deadline, now, now),
        )
        if cur.rowcount == 1:
            return rid, "pending", False
        row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()
        return rid, row[0], True

    def claim(
        self, run_ids: Sequence[str], now: int, hold: Callable[[str], str | None] | None = None
    ) -> list[Assign]:
        """Mark ready runs running under a new claim token; return them with their memos.

        `hold(workflow)` gives a reason when a workflow cannot run now (its file
        failed to load): such runs stay pending with the reason as their error."""
        out: list[Assign] = []
        for rid in run_ids:
            if hold is not None:
                found = self.conn.execute(
                    "SELECT workflow FROM runs WHERE id = ?", (rid,)
                ).fetchone()
                reason = hold(found[0]) if found else None
                if reason is not None:
                    self.conn.execute(
                        "UPDATE runs SET error = ?, updated_at = ?"
                        " WHERE id = ? AND status = 'pending'",
                        (reason, now, rid),
                    )
                    continue
            row = self.conn.execute(
                "UPDATE runs SET status = 'running', claim_token = claim_token + 1,"
                " updated_at = ?, wake_at = NULL, error = CASE WHEN attempts > 1 THEN error END"
                " WHERE id = ? AND status = 'pending' AND (wake_at IS NULL OR wake_at <= ?)"
                " RETURNING workflow, payload, attempts, claim_token",
                (now, rid, now),
            ).fetchone()
            if row is None:
                continue
            memo = [
                MemoEntry(key, status, msgspec.Raw(result or b"null"), error, attempts)
                for key, status, result, error, attempts in self.conn.execute(
                    "SELECT key, status, result, error, attempts FROM steps WHERE run_id = ?",
                    (rid,),
                )
            ]
            out.append(Assign(rid, row[0], msgspec.Raw(row[1]), row[2], row[3], memo))
        return out

    def _check_claim(self, run_id: str, token: int) -> int:
        """Refuse a write from a worker that no longer holds the run; return cancel_requested."""
        row = self.conn.execute(
            "SELECT cancel_requested FROM runs WHERE id = ? AND claim_token = ?"
            " AND status = 'running'",
            (run_id, token),
        ).fetchone()
        if row is None:
            raise StaleClaim(f"run {run_id} is no longer held by this worker (token {token})")
        return int(row[0])

    def save_step(self, msg: StepDone, now: int, release: bool = False) -> str:
        """Checkpoint a finished step. Returns STEP_SAVED, or STEP_CANCELLED when the run
        was cancelled meanwhile, or STEP_RELEASED when `release` (the supervisor is
        stopping) gave the run back to the queue: either way the worker stops it here.

        Atomic by itself, so the committer runs it without a savepoint of its own
        (this is the hottest write): the common case is one statement that saves
        the step only if the worker still holds the run; anything else runs in a
        savepoint here."""
        started, finished = msg.started_at or now, msg.finished_at or now
        if not release:
            saved = self.conn.execute(
                _SAVE_STEP_IF_HELD,
                (
                    msg.run_id, msg.key, msg.name, msg.kind, msg.status, bytes(msg.result),
                    msg.error, msg.attempts, msg.seq, started, finished, msg.run_id, msg.token,
                ),
            )  # fmt: skip
            if saved.rowcount == 1:
                return STEP_SAVED
        with self.savepoint():
            cancel = self._check_claim(msg.run_id, msg.token)
            self._upsert_step(
                msg, msg.kind, msg.status, bytes(msg.result), msg.error, msg.attempts,
                started, finished, None,
            )  # fmt: skip
            if cancel:
                reason = self._cancel_reason(msg.run_id)
                self._finish_run(msg.run_id, RunStatus.CANCELLED, now, error=reason)
                return STEP_CANCELLED
            if release:
                self.release(msg.run_id, msg.token, now)
                return STEP_RELEASED
            return STEP_SAVED

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo everything inside if it raises (unless SQLite already rolled the whole
        transaction back, as on a full disk: then the error says so to the committer)."""
        self.conn.execute("SAVEPOINT inner")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO inner")
                self.conn.execute("RELEASE inner")
            raise
        self.conn.execute("RELEASE inner")

    def park(self, msg: Park, now: int, check: SchemaCheck) -> bytes | None:
        """Park a run on a sleep, a retry backoff or a signal, in one transaction.

        Returns the step's result instead of parking when nothing needs waiting
        for: a sleep already due, or a kept signal that the run consumes now.
        Returns CANCELLED when a cancel was requested: the run ends here.
        """
        cancel = self._check_claim(msg.run_id, msg.token)
        started = msg.started_at or now
        if cancel:
            self._finish_run(
                msg.run_id, RunStatus.CANCELLED, now, error=self._cancel_reason(msg.run_id)
            )
            return CANCELLED
        if msg.kind == "approval":
            assert msg.approval is not None
            key = f"{msg.run_id}:{msg.key}"
            decided = self.approvals.create(key, msg.run_id, msg.key, msg.approval, now)
            if decided is not None:  # decided while the run was away: go on with it
                self._upsert_step(
                    msg, "approval", "completed", decided, None, 1, started, now, None
                )
                return decided
            self._upsert_step(msg, "approval", "waiting", None, None, 1, started, None, None)
            self._set_parked(msg.run_id, RunStatus.WAITING, None, f"approval:{key}", now)
            return None
        if msg.kind == "wait":
            assert msg.event is not None
            schema = bytes(msg.schema).decode() if bytes(msg.schema) != b"null" else None
            kept = self._take_kept_signal(msg.event, msg.run_id, schema, now, check)
            if kept is not None:
                self._upsert_step(
                    msg,
                    "wait",
                    "completed",
                    kept,
                    None,
                    1,
                    started,
                    now,
                    None,
                )
                return kept
            self.conn.execute(
                "INSERT OR REPLACE INTO waiters (run_id, event, step_key, timeout_at, schema)"
                " VALUES (?, ?, ?, ?, ?)",
                (msg.run_id, msg.event, msg.key, msg.wake_at, schema),
            )
            self._upsert_step(
                msg,
                "wait",
                "waiting",
                None,
                None,
                1,
                started,
                None,
                msg.wake_at,
            )
            self._set_parked(msg.run_id, RunStatus.WAITING, msg.wake_at, msg.event, now)
            return None
        assert msg.wake_at is not None
        if msg.kind == "sleep":
            if msg.wake_at <= now:
                self._upsert_step(
                    msg,
                    "sleep",
                    "completed",
                    b"null",
                    None,
                    1,
                    started,
                    now,
                    msg.wake_at,
                )
                return b"null"
            self._upsert_step(
                msg,
                "sleep",
                "sleeping",
                None,
                None,
                1,
                started,
                None,
                msg.wake_at,
            )
        else:  # a step waiting out its retry backoff
            self._upsert_step(
                msg,
                "run",
                "running",
                None,
                msg.error,
                msg.attempts,
                started,
                None,
                msg.wake_at,
            )
        self._set_parked(msg.run_id, RunStatus.SLEEPING, msg.wake_at, None, now)
        return None

    def finish(self, msg: Finish, now: int) -> Outcome:
        """The handler ended; apply the retry rules of SPEC §4."""
        if self._check_claim(msg.run_id, msg.token) and msg.outcome != "completed":
            self._finish_run(
                msg.run_id, RunStatus.CANCELLED, now, error=self._cancel_reason(msg.run_id)
            )
            return Outcome(RunStatus.CANCELLED, 0)
        attempts, max_attempts = self.conn.execute(
            "SELECT attempts, max_attempts FROM runs WHERE id = ?", (msg.run_id,)
        ).fetchone()
        decision = on_handler_end(
            msg.outcome, attempts=attempts, max_attempts=max_attempts, now_ms=now
        )
        if decision.status == RunStatus.PENDING:
            self._drop_unfinished_steps(msg.run_id)
            self.conn.execute(
                "UPDATE runs SET status = 'pending', attempts = ?, wake_at = ?, error = ?,"
                " traceback = ?, updated_at = ? WHERE id = ?",
                (decision.attempts, decision.wake_at, msg.error, msg.traceback, now, msg.run_id),
            )
        else:
            self._finish_run(
                msg.run_id,
                decision.status,
                now,
                result=bytes(msg.result) if decision.status == RunStatus.COMPLETED else None,
                error=msg.error,
                traceback=msg.traceback,
            )
        return decision

    def crashed(
        self, run_ids: Iterable[str], *, alone: bool, reason: str, now: int
    ) -> tuple[list[str], list[str]]:
        """A worker died holding these runs: requeue them (see transitions.on_worker_crash).

        Returns (runs back to pending, runs failed for good)."""
        requeued: list[str] = []
        failed: list[str] = []
        for rid in run_ids:
            row = self.conn.execute(
                "SELECT attempts, max_attempts, crashes FROM runs"
                " WHERE id = ? AND status = 'running'",
                (rid,),
            ).fetchone()
            if row is None:
                continue
            decision = on_worker_crash(
                crashes=row[2] + 1, alone=alone, attempts=row[0], max_attempts=row[1]
            )
            if decision.status == RunStatus.FAILED:
                self._finish_run(rid, RunStatus.FAILED, now, error=reason)
                failed.append(rid)
                continue
            self.conn.execute(
                "UPDATE runs SET status = 'pending', attempts = ?, crashes = crashes + 1,"
                " claim_token = claim_token + 1, updated_at = ? WHERE id = ?",
                (decision.attempts, now, rid),
            )
            requeued.append(rid)
        return requeued, failed

    def release(self, run_id: str, token: int, now: int) -> None:
        """Give a run back to the queue, uncharged (the supervisor is stopping)."""
        self.conn.execute(
            "UPDATE runs SET status = 'pending', claim_token = claim_token + 1, updated_at = ?"
            " WHERE id = ? AND claim_token = ? AND status = 'running'",
            (now, run_id, token),
        )

    def recover(self, now: int) -> None:
        """At start-up: runs left `running` by a previous supervisor go back to pending."""
        self.conn.execute(
            "UPDATE runs SET status = 'pending', claim_token = claim_token + 1, updated_at = ?"
            " WHERE status = 'running'",
            (now,),
        )

    def ready_runs(self, now: int, limit: int = 100_000) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE status = 'pending' AND (wake_at IS NULL OR wake_at <= ?)"
            " ORDER BY created_at LIMIT ?",
            (now, limit),
        )
        return [r[0] for r in rows]

    def cancel(self, run_id: str, reason: str | None, now: int) -> str:
        """Cancel a run; a running one stops at its next step boundary. Returns its status."""
        status = self._status(run_id)
        if status not in CANCELLABLE:
            raise NotAllowed(f"run {run_id} is {status}; only unfinished runs can be cancelled")
        reason = reason or "cancelled"
        if status == RunStatus.RUNNING:
            self.conn.execute(
                "UPDATE runs SET cancel_requested = 1, error = ?, updated_at = ? WHERE id = ?",
                (reason, now, run_id),
            )
            return status
        self._finish_run(run_id, RunStatus.CANCELLED, now, error=reason)
        return RunStatus.CANCELLED

    def retry(self, run_id: str, now: int, timeout_ms: int | None = None) -> None:
        """Re-queue a failed or cancelled run; its finished steps stay cached.

        With the workflow's `timeout`, the retried run gets a fresh deadline."""
        status = self._status(run_id)
        if status not in RETRYABLE:
            raise NotAllowed(
                f"run {run_id} is {status}; only failed or cancelled runs can be retried"
            )
        self._drop_unfinished_steps(run_id)
        self.conn.execute(
            "UPDATE runs SET status = 'pending', attempts = 1, crashes = 0, error = NULL,"
            " traceback = NULL, result = NULL, finished_at = NULL, cancel_requested = 0,"
            " wake_at = NULL, deadline_at = ?, updated_at = ? WHERE id = ?",
            (now + timeout_ms if timeout_ms else None, now, run_id),
        )

    # -- signals --------------------------------------------------------------------

    def signal(
        self,
        event: str,
        payload: bytes,
        *,
        run_id: str | None,
        ttl_ms: int,
        now: int,
        check: SchemaCheck,
    ) -> tuple[list[str], bool]:
        """Deliver to every current waiter (or the one run); keep it when none takes it."""
        if run_id is not None:
            self._status(run_id)  # raises RunNotFound
            rows = self.conn.execute(
                "SELECT run_id, step_key, schema FROM waiters WHERE event = ? AND run_id = ?",
                (event, run_id),
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT run_id, step_key, schema FROM waiters WHERE event = ?", (event,)
            ).fetchall()
        woken: list[str] = []
        for rid, key, schema in rows:
            if schema is not None:
                problem = check(schema, payload)
                if problem is not None:
                    if run_id is not None:
                        raise InvalidRequest(
                            f"payload does not match the type run {rid} waits for: {problem}"
                        )
                    continue
            self._resume_waiter(rid, key, payload, now)
            woken.append(rid)
        if woken:
            return woken, False
        self.conn.execute(
            "INSERT INTO signals (event, run_id, payload, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (event, run_id, payload, now, now + ttl_ms),
        )
        return [], True

    def _take_kept_signal(
        self, event: str, run_id: str, schema: str | None, now: int, check: SchemaCheck
    ) -> bytes | None:
        rows = self.conn.execute(
            "SELECT id, payload FROM signals WHERE event = ? AND (run_id IS NULL OR run_id = ?)"
            " AND expires_at > ? ORDER BY id",
            (event, run_id, now),
        )
        for sid, payload in rows.fetchall():
            if schema is None or check(schema, payload) is None:
                self.conn.execute("DELETE FROM signals WHERE id = ?", (sid,))
                return bytes(payload)
        return None

    def _resume_waiter(self, run_id: str, key: str, result: bytes, now: int) -> None:
        self.conn.execute("DELETE FROM waiters WHERE run_id = ?", (run_id,))
        self.conn.execute(
            "UPDATE steps SET status = 'completed', result = ?, finished_at = ?, wake_at = NULL"
            " WHERE run_id = ? AND key = ?",
            (result, now, run_id, key),
        )
        self.conn.execute(
            "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_for = NULL,"
            " updated_at = ? WHERE id = ?",
            (now, run_id),
        )

    # -- the timer ------------------------------------------------------------------

    def next_wake(self) -> int | None:
        """The earliest moment anything is due: a wake-up, a wait timeout, a deadline."""
        return read_next_wake(self.conn)

    def wake_due(
        self, now: int, limit: int = WAKE_BATCH
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Move due runs on: sleeps end, waits time out with None, deadlines fail.

        Returns (runs now ready, (run, error) for runs that failed). At most `limit`
        sleepers at a time, earliest first, so that a crowd due at one instant is
        woken in transactions short enough for its first runs to get going (and
        other writes to get in) while the rest are woken; the scheduler calls
        again while anything is due."""
        expired = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE deadline_at IS NOT NULL AND deadline_at <= ?", (now,)
            ).fetchall()
        ]
        for rid in expired:
            self._finish_run(rid, RunStatus.FAILED, now, error="timeout")
        failures = [(rid, "timeout") for rid in expired]
        ready, failed = self.approvals.due(now)
        for rid, error in failed:
            self._finish_run(rid, RunStatus.FAILED, now, error=error)
        failures += failed
        for rid, status in self.conn.execute(
            "SELECT id, status FROM runs WHERE wake_at IS NOT NULL AND wake_at <= ?"
            " ORDER BY wake_at LIMIT ?",
            (now, limit),
        ).fetchall():
            if status == RunStatus.SLEEPING:
                self.conn.execute(
                    "UPDATE steps SET status = CASE kind WHEN 'sleep' THEN 'completed'"
                    " ELSE status END, result = CASE kind WHEN 'sleep' THEN X'6E756C6C'"
                    " ELSE result END, finished_at = CASE kind WHEN 'sleep' THEN ? ELSE NULL END,"
                    " wake_at = NULL WHERE run_id = ? AND status IN ('sleeping', 'running')",
                    (now, rid),
                )
            elif status == RunStatus.WAITING:
                key = self.conn.execute(
                    "SELECT step_key FROM waiters WHERE run_id = ?", (rid,)
                ).fetchone()
                if key is not None:
                    self._resume_waiter(rid, key[0], b"null", now)
                    self.conn.execute(
                        "UPDATE steps SET error = 'timed out' WHERE run_id = ? AND key = ?",
                        (rid, key[0]),
                    )
            self.conn.execute(
                "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_for = NULL,"
                " updated_at = ? WHERE id = ?",
                (now, rid),
            )
            ready.append(rid)
        return ready, failures

    def prune(self, before: int) -> int:
        """Delete runs (and their steps) finished before `before`, and expired signals."""
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?", (before,)
            ).fetchall()
        ]
        for rid in ids:
            self.conn.execute("DELETE FROM steps WHERE run_id = ?", (rid,))
            self.approvals.forget_run(rid)
            self.conn.execute("DELETE FROM runs WHERE id = ?", (rid,))
        self.conn.execute("DELETE FROM signals WHERE expires_at <= ?", (before,))
        return len(ids)

    def expire_signals(self, now: int) -> None:
        self.conn.execute("DELETE FROM signals WHERE expires_at <= ?", (now,))

    # -- helpers ----------------------------------------------------------------------

    def _status(self, run_id: str) -> RunStatus:
        row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return RunStatus(row[0])

    def _cancel_reason(self, run_id: str) -> str:
        row = self.conn.execute("SELECT error FROM runs WHERE id = ?", (run_id,)).fetchone()
        return str(row[0] or "cancelled")

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
            f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            + _STEP_CONFLICT,
            (
                msg.run_id,
                msg.key,
                msg.name,
                kind,
                status,
                result,
                error,
                attempts,
                msg.seq,
                started,
                finished,
                wake_at,
            ),
        )

    def _set_parked(
        self, run_id: str, status: RunStatus, wake_at: int | None, waiting_for: str | None, now: int
    ) -> None:
        self.conn.execute(
            "UPDATE runs SET status = ?, wake_at = ?, waiting_for = ?, updated_at = ? WHERE id = ?",
            (status, wake_at, waiting_for, now, run_id),
        )

    def _drop_unfinished_steps(self, run_id: str) -> None:
        """Steps that did not finish run again; so approvals that were not decided by
        someone (cancelled with the run, say) are asked again, not replayed."""
        self.approvals.forget_unfinished(run_id)
        self.conn.execute("DELETE FROM steps WHERE run_id = ? AND status != 'completed'", (run_id,))
        self.conn.execute("DELETE FROM waiters WHERE run_id = ?", (run_id,))

    def _finish_run(
        self,
        run_id: str,
        status: RunStatus,
        now: int,
        *,
        result: bytes | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> None:
        assert status in FINISHED
        self.conn.execute("DELETE FROM waiters WHERE run_id = ?", (run_id,))
        if status != RunStatus.COMPLETED:
            self.approvals.cancel_for_run(run_id, now)
        self.conn.execute(
            "UPDATE runs SET status = ?, result = ?, error = ?, traceback = ?, wake_at = NULL,"
            " deadline_at = NULL, waiting_for = NULL, cancel_requested = 0,"
            " claim_token = claim_token + 1, updated_at = ?, finished_at = ? WHERE id = ?",
            (status, result, error, traceback, now, now, run_id),
        )


# -- reading ------------------------------------------------------------------------


def _refuse_foreign_file(path: Path) -> None:
    """SQLite would happily turn a short non-database file into a database: refuse first."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a tako database (not even SQLite); it was left untouched. "
            "Move it away or point --data-dir elsewhere."
        )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    return conn


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open runs.db for reading only (used while the supervisor is down, too)."""
    if not path.exists():
        raise StoreError(f"no database at {path}")
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    return conn


def _prepare(conn: sqlite3.Connection, durability: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id != 0 or tables != 0):
        raise sqlite3.DatabaseError("it was not created by tako")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = OFF")
    scripts = migrations()
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(scripts):
        raise sqlite3.DatabaseError(
            f"its schema version {version} is newer than this tako understands ({len(scripts)})"
        )
    for number in range(version, len(scripts)):
        conn.execute("BEGIN IMMEDIATE")
        for statement in _statements(scripts[number]):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {number + 1}")
        conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]


RUN_COLUMNS = (
    "id, workflow, status, payload, result, error, traceback, attempts, max_attempts,"
    " created_at, updated_at, wake_at, waiting_for, cancel_requested"
)


def run_object(row: sqlite3.Row, steps: list[sqlite3.Row] | None = None) -> dict[str, Any]:
    """SPEC §7's run object, with payload and result kept as raw JSON."""
    out: dict[str, Any] = {
        "run_id": row["id"],
        "workflow": row["workflow"],
        "status": row["status"],
        "payload": readable_json(row["payload"]),
        "result": readable_json(row["result"]) if row["result"] is not None else NULL,
        "error": row["error"],
        "traceback": row["traceback"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "wake_at": iso(row["wake_at"]),
        "waiting_for": row["waiting_for"],
        "cancel_requested": bool(row["cancel_requested"]),
    }
    if steps is not None:
        out["steps"] = [
            {
                "key": s["key"],
                "name": s["name"],
                "kind": s["kind"],
                "status": s["status"],
                "result": readable_json(s["result"]) if s["result"] is not None else NULL,
                "error": s["error"],
                "attempts": s["attempts"],
                "started_at": iso(s["started_at"]),
                "finished_at": iso(s["finished_at"]),
                "wake_at": iso(s["wake_at"]),
            }
            for s in steps
        ]
    return out


def read_run(conn: sqlite3.Connection, run_id: str, *, steps: bool = True) -> dict[str, Any]:
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    step_rows = (
        conn.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        if steps
        else None
    )
    return run_object(row, step_rows)


def read_runs(
    conn: sqlite3.Connection, *, status: str | None, workflow: str | None, limit: int
) -> list[dict[str, Any]]:
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if workflow:
        where.append("workflow = ?")
        args.append(workflow)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [run_object(r) for r in rows]


def read_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        status: n for status, n in conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
    }


def read_next_wake(conn: sqlite3.Connection) -> int | None:
    """The earliest moment anything is due: a wake-up, a wait timeout, a deadline, or an
    approval's deadline, reminder or escalation. Each MIN reads one partial index."""
    row = conn.execute(
        "SELECT MIN(t) FROM (SELECT MIN(wake_at) AS t FROM runs WHERE wake_at IS NOT NULL"
        " UNION ALL SELECT MIN(deadline_at) FROM runs WHERE deadline_at IS NOT NULL"
        " UNION ALL SELECT MIN(timer_at) FROM approvals WHERE timer_at IS NOT NULL)"
    ).fetchone()
    return None if row is None else row[0]
