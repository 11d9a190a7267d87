"""The backends' writes on child runs: started in the parent's park, waited for by the
parent's step, finished into it, cancelled with it.

A child is created in the same transaction that records the parent's step, and
its id is the same on every replay (`<parent>.<step key>` unless the workflow
names one), so a parent that crashes anywhere around the start still has exactly
one child. When a child ends, the transaction that ends it completes the
parent's waiting step with the child's outcome and makes the parent due at once.
"""

from __future__ import annotations

import hashlib
import re
from typing import Generic, TypeVar

import msgspec

from tako._errors import NotAllowed
from tako._protocol import Park
from tako._records import RUN_ID_PATTERN
from tako.takod.rules.runs import FINISHED, RunStatus
from tako.takod.storage.interface import Created, NewRun
from tako.takod.storage.sqlite.limits import LimitWrites
from tako.takod.storage.sqlite.portable import Conn

C = TypeVar("C", bound=Conn)
UNFINISHED = ("pending", "running", "sleeping", "waiting")
_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9._:@-]")


def child_run_id(parent: str, key: str) -> str:
    """The default id of the child a parent's step starts: the same on every replay."""
    tail = _NOT_IN_AN_ID.sub("-", key)
    rid = f"{parent}.{tail}"
    if tail != key or len(rid) > 128:  # keep distinct keys distinct after the cleaning
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        rid = f"{parent[:100]}.{tail[:16]}-{digest}"
    assert re.match(RUN_ID_PATTERN, rid), rid
    return rid


def outcome_of(run_id: str, status: str, result: bytes | None, error: str | None) -> bytes:
    """What a parent's `step.invoke` records when its child ends."""
    return (
        b'{"run_id":' + msgspec.json.encode(run_id)
        + b',"status":' + msgspec.json.encode(status)
        + b',"result":' + (result if result is not None else b"null")
        + b',"error":' + msgspec.json.encode(error) + b"}"
    )  # fmt: skip


class ChildWrites(LimitWrites[C], Generic[C]):
    def start_child(self, park: Park, new: NewRun, now: int) -> tuple[str, bytes | None]:
        """Create (or, on a replay, find) the child of `park`'s step. Returns its id and,
        for an invoke whose child has already ended, the outcome to record at once."""
        spec = park.child
        assert spec is not None
        rid = spec.run_id or child_run_id(park.run_id, park.key)
        waiting_step = park.key if spec.wait else None
        self.create_run(new._replace(run_id=rid, parent_step=waiting_step), now)
        row = self.conn.execute(
            "SELECT status, result, error, parent_run_id, parent_step FROM runs WHERE id = ?",
            (rid,),
        ).fetchone()
        status, result, error, parent, step = row
        if spec.wait and (parent, step) != (park.run_id, park.key):
            if step is not None:  # another run's step waits for it already
                raise NotAllowed(f"run {rid} is the child of {parent}; it cannot be invoked here")
            self.conn.execute(  # a run started on its own: this step now waits for it
                "UPDATE runs SET parent_step = ?, parent_run_id = COALESCE(parent_run_id, ?)"
                " WHERE id = ?",
                (park.key, park.run_id, rid),
            )
        if spec.wait and status in FINISHED:
            return rid, outcome_of(rid, status, _bytes(result), error)
        return rid, None

    def child_ended(
        self,
        run_id: str,
        parent: str,
        key: str,
        outcome: tuple[str, bytes | None, str | None],
        now: int,
    ) -> str | None:
        """`run_id` just ended (`outcome`: status, result, error) and the step `key` of
        `parent` waits for it: complete that step with its outcome and make the parent
        due now. Returns the parent so woken."""
        status, result, error = outcome
        done = self.conn.execute(
            "UPDATE steps SET status = 'completed', result = ?, finished_at = ?, wake_at = NULL"
            " WHERE run_id = ? AND key = ? AND status = 'waiting'",
            (outcome_of(run_id, status, result, error), now, parent, key),
        )
        if done.rowcount == 0:
            return None
        woken = self.conn.execute(
            "UPDATE runs SET status = 'pending', wake_at = ?, waiting_for = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'waiting'",
            (now, now, parent),
        )
        return parent if woken.rowcount == 1 else None

    def cancel_children(self, run_id: str, now: int) -> None:
        """A cancelled run's unfinished children are cancelled too (and theirs)."""
        marks = ", ".join("?" * len(UNFINISHED))
        children = self.conn.execute(
            f"SELECT id FROM runs WHERE parent_run_id = ? AND status IN ({marks})",
            (run_id, *UNFINISHED),
        ).fetchall()
        for (child,) in children:
            self.cancel(child, f"its parent run {run_id} was cancelled", now)

    # -- supplied by the runs' writes ----------------------------------------------------

    def create_run(self, new: NewRun, now: int) -> Created:
        raise NotImplementedError

    def cancel(self, run_id: str, reason: str | None, now: int) -> RunStatus:
        raise NotImplementedError


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)
