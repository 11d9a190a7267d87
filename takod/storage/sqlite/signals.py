"""The backends' writes on signals: delivering one to the runs waiting for its event,
keeping it for a later waiter when none waits, and a waiting run's wake-up.

A run waits for one event (`step.wait_for`) or for the first of several
(`step.wait_for_any`): one `waits` row per event, removed together when any of
them resumes it, so a second event arriving at the same moment finds no waiter
and is kept instead of consumed.
"""

from __future__ import annotations

from typing import Generic

import msgspec

from tako._errors import InvalidRequest
from tako.takod.rules.runs import RunStatus
from tako.takod.storage.interface import Delivered, SchemaCheck
from tako.takod.storage.sqlite.approvals import C
from tako.takod.storage.sqlite.children import ChildWrites

_RESUME = (
    "UPDATE runs SET status = 'pending', wake_at = NULL, waiting_for = NULL, updated_at = ?"
    " WHERE id = ?"
)


def named(event: str, payload: bytes) -> bytes:
    """The result of a wait for several events: which one came, and its payload."""
    return b'{"name":' + msgspec.json.encode(event) + b',"payload":' + payload + b"}"


class SignalWrites(ChildWrites[C], Generic[C]):
    def signal(
        self,
        event: str,
        payload: bytes,
        *,
        run_id: str | None,
        ttl_ms: int,
        now: int,
        check: SchemaCheck,
    ) -> Delivered:
        if run_id is not None:
            self._status(run_id)  # raises RunNotFound
            rows = self.conn.execute(
                "SELECT run_id, step_key, schema, any_of FROM waits WHERE event = ? AND run_id = ?"
                + self.dialect.lock,
                (event, run_id),
            ).fetchall()
        else:  # locked: a waiter another supervisor resumes meanwhile is not resumed twice
            rows = self.conn.execute(
                "SELECT run_id, step_key, schema, any_of FROM waits WHERE event = ?"
                " ORDER BY run_id" + self.dialect.lock,
                (event,),
            ).fetchall()
        woken: list[str] = []
        for rid, key, schema, any_of in rows:
            if schema is not None:
                problem = check(schema, payload)
                if problem is not None:
                    if run_id is not None:
                        raise InvalidRequest(
                            f"payload does not match the type run {rid} waits for: {problem}"
                        )
                    continue
            if self._resume_waiter(rid, key, named(event, payload) if any_of else payload, now):
                woken.append(rid)
        if woken:
            return Delivered(woken, False)
        self.conn.execute(
            "INSERT INTO signals (event, run_id, payload, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (event, run_id, payload, now, now + ttl_ms),
        )
        return Delivered([], True)

    def _take_kept_signal(
        self, events: list[str], run_id: str, schema: str | None, now: int, check: SchemaCheck
    ) -> tuple[str, bytes] | None:
        """The oldest kept signal for any of `events` (event, payload), consumed."""
        marks = ", ".join("?" * len(events))
        rows = self.conn.execute(
            f"SELECT id, event, payload FROM signals WHERE event IN ({marks})"
            " AND (run_id IS NULL OR run_id = ?) AND expires_at > ? ORDER BY id",
            (*events, run_id, now),
        )
        for sid, event, payload in rows.fetchall():
            if schema is None or check(schema, payload) is None:
                taken = self.conn.execute("DELETE FROM signals WHERE id = ?", (sid,))
                if taken.rowcount == 1:  # not consumed by another supervisor meanwhile
                    return event, bytes(payload)
        return None

    def _resume_waiter(self, run_id: str, key: str, result: bytes, now: int) -> bool:
        """Complete the wait with `result` and make the run ready; False if another
        signal (of a wait for several events) resumed it first."""
        gone = self.conn.execute("DELETE FROM waits WHERE run_id = ?", (run_id,))
        if gone.rowcount == 0:
            return False
        self.conn.execute(
            "UPDATE steps SET status = 'completed', result = ?, finished_at = ?, wake_at = NULL"
            " WHERE run_id = ? AND key = ?",
            (result, now, run_id, key),
        )
        self.conn.execute(_RESUME, (now, run_id))
        return True

    # -- supplied by the runs' writes ----------------------------------------------------

    def _status(self, run_id: str) -> RunStatus:
        raise NotImplementedError
