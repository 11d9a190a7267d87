"""takod.store.Store against a real SQLite file: the run life cycle.

The store's write methods never commit: in takod the committer wraps a batch of them in
BEGIN IMMEDIATE ... COMMIT, each in a SAVEPOINT that is rolled back when the write raises.
`tx()` below does the same for one write, so a write that raises leaves nothing behind here
exactly as it does in production.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
import trio

from tako._errors import InvalidRequest, NotAllowed, RunNotFound, StaleClaim
from tako._protocol import Assign, Finish, Park, StepDone
from takod.committer import Committer
from takod.store import (
    APPLICATION_ID,
    CANCELLED,
    STEP_CANCELLED,
    STEP_SAVED,
    Store,
    StoreError,
    iso,
    migrations,
    open_read_only,
    read_counts,
    read_next_wake,
    read_run,
    read_runs,
)
from takod.transitions import Outcome, RunStatus
from tests.unit.storekit import check, tx

NOW = 1_800_000_000_000
DAY = 86_400_000


# -- helpers ----------------------------------------------------------------------------------


def start(
    store: Store,
    run_id: str | None = None,
    *,
    workflow: str = "fulfill-order",
    payload: bytes = b'{"order": 42}',
    max_attempts: int = 3,
    now: int = NOW,
    delay_ms: int | None = None,
    timeout_ms: int | None = None,
) -> str:
    rid, status, dedup = tx(
        store,
        store.create_run,
        workflow=workflow,
        payload=payload,
        max_attempts=max_attempts,
        now=now,
        run_id=run_id,
        delay_ms=delay_ms,
        timeout_ms=timeout_ms,
    )
    assert (status, dedup) == ("pending", False)
    return rid


def claim(store: Store, run_id: str, now: int = NOW) -> Assign:
    assigns = tx(store, store.claim, [run_id], now)
    assert [a.run_id for a in assigns] == [run_id]
    return assigns[0]


def started(store: Store, run_id: str | None = None, **kwargs: Any) -> Assign:
    """A new run, claimed by a worker."""
    now = kwargs.get("now", NOW)
    return claim(store, start(store, run_id, **kwargs), now)


SEQ = itertools.count()  # steps' order of execution, as a worker numbers them


def done(
    a: Assign,
    key: str,
    result: bytes = b"1",
    *,
    status: Literal["completed", "failed"] = "completed",
    error: str | None = None,
    attempts: int = 1,
    token: int | None = None,
) -> StepDone:
    return StepDone(
        run_id=a.run_id,
        token=a.token if token is None else token,
        key=key,
        name=key.split("#")[0],
        status=status,
        result=msgspec.Raw(result),
        error=error,
        attempts=attempts,
        started_at=NOW,
        finished_at=NOW + 5,
        seq=next(SEQ),
    )


def park(
    a: Assign,
    key: str,
    kind: Literal["sleep", "wait", "retry"],
    *,
    wake_at: int | None = None,
    event: str | None = None,
    schema: Any = None,
    attempts: int = 0,
    error: str | None = None,
) -> Park:
    return Park(
        run_id=a.run_id,
        token=a.token,
        key=key,
        name=event if kind == "wait" and event else key.split("#")[0],
        kind=kind,
        wake_at=wake_at,
        event=event,
        schema=msgspec.Raw(msgspec.json.encode(schema)),
        attempts=attempts,
        error=error,
        started_at=NOW,
        seq=next(SEQ),
    )


def finish(
    a: Assign,
    outcome: Literal["completed", "failed", "fatal", "cancelled"],
    result: bytes = b"null",
    *,
    error: str | None = None,
    traceback: str | None = None,
) -> Finish:
    return Finish(
        run_id=a.run_id,
        token=a.token,
        outcome=outcome,
        result=msgspec.Raw(result),
        error=error,
        traceback=traceback,
    )


def wait_on(store: Store, a: Assign, event: str, *, timeout_at: int | None = None) -> None:
    """Park a claimed run on `event` and check that it really parked."""
    assert (
        tx(store, store.park, park(a, event, "wait", event=event, wake_at=timeout_at), NOW, check)
        is None
    )


def signal(
    store: Store,
    event: str,
    payload: bytes = b"null",
    *,
    run_id: str | None = None,
    ttl_ms: int = 7 * DAY,
    now: int = NOW,
) -> tuple[list[str], bool]:
    return tx(
        store, store.signal, event, payload, run_id=run_id, ttl_ms=ttl_ms, now=now, check=check
    )


def run(store: Store, run_id: str) -> dict[str, Any]:
    return read_run(store.reader, run_id)


def status(store: Store, run_id: str) -> str:
    return str(run(store, run_id)["status"])


def raw(value: Any) -> bytes:
    assert isinstance(value, msgspec.Raw)
    return bytes(value)


def steps(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in run(store, run_id)["steps"]}


class Decision(msgspec.Struct):
    kind: Literal["approved", "rejected"]


DECISION_SCHEMA = msgspec.json.schema(Decision)


# -- create_run ----------------------------------------------------------------------------


def test_create_run_inserts_a_pending_run(store: Store) -> None:
    rid, st, dedup = tx(
        store, store.create_run, workflow="wf", payload=b'{"a": 1}', max_attempts=4, now=NOW
    )
    assert (st, dedup) == ("pending", False)
    assert rid.startswith("r_")
    obj = run(store, rid)
    assert obj["run_id"] == rid
    assert obj["workflow"] == "wf"
    assert obj["status"] == "pending"
    assert raw(obj["payload"]) == b'{"a": 1}'
    assert raw(obj["result"]) == b"null"
    assert (obj["attempts"], obj["max_attempts"]) == (1, 4)
    assert obj["created_at"] == obj["updated_at"] == iso(NOW) == "2027-01-15T08:00:00.000Z"
    assert obj["wake_at"] is None
    assert obj["steps"] == []
    assert tx(store, store.ready_runs, NOW) == [rid]


def test_generated_run_ids_sort_by_creation_time(store: Store) -> None:
    ids = [start(store, now=NOW + offset) for offset in (0, 1, 1000, DAY, 365 * DAY)]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_starting_an_existing_id_returns_the_existing_run(store: Store) -> None:
    rid = start(store, "order-42", payload=b'"first"')
    again = tx(
        store,
        store.create_run,
        workflow="other",
        payload=b'"second"',
        max_attempts=1,
        now=NOW + 10,
        run_id="order-42",
    )
    assert again == ("order-42", "pending", True)
    claim(store, rid)
    again = tx(
        store, store.create_run, workflow="wf", payload=b"2", max_attempts=1, now=NOW, run_id=rid
    )
    assert again == ("order-42", "running", True)
    obj = run(store, rid)
    assert raw(obj["payload"]) == b'"first"'  # nothing was overwritten
    assert obj["workflow"] == "fulfill-order"
    assert read_counts(store.reader) == {"running": 1}


def test_a_delayed_run_is_not_ready_before_its_time(store: Store) -> None:
    rid = start(store, delay_ms=5000)
    assert status(store, rid) == "pending"
    assert run(store, rid)["wake_at"] == iso(NOW + 5000)
    assert tx(store, store.ready_runs, NOW + 4999) == []
    assert tx(store, store.claim, [rid], NOW) == []
    assert tx(store, store.claim, [rid], NOW + 4999) == []
    assert tx(store, store.next_wake) == NOW + 5000
    assert tx(store, store.ready_runs, NOW + 5000) == [rid]
    a = claim(store, rid, NOW + 5000)
    assert a.token == 1
    assert run(store, rid)["wake_at"] is None


# -- claim -----------------------------------------------------------------------------------


def test_claim_assigns_a_run_with_a_new_token(store: Store) -> None:
    rid = start(store, payload=b'{"order": 7}')
    [a] = tx(store, store.claim, [rid, "no-such-run"], NOW + 1)
    assert (a.run_id, a.workflow, a.attempt, a.token, a.memo) == (
        rid,
        "fulfill-order",
        1,
        1,
        [],
    )
    assert bytes(a.payload) == b'{"order": 7}'
    assert status(store, rid) == "running"
    assert run(store, rid)["updated_at"] == iso(NOW + 1)
    # a claimed run is not claimed a second time
    assert tx(store, store.claim, [rid], NOW + 2) == []
    assert tx(store, store.ready_runs, NOW + 2) == []


def test_claim_again_after_requeue_increments_the_token(store: Store) -> None:
    a = started(store)
    tx(store, store.recover, NOW)
    b = claim(store, a.run_id)
    assert b.token > a.token
    tx(store, store.crashed, [b.run_id], alone=False, reason="killed", now=NOW)
    c = claim(store, a.run_id)
    assert c.token > b.token


def test_claim_carries_the_memo_of_finished_steps(store: Store) -> None:
    a = started(store)
    tx(store, store.save_step, done(a, "load", b'{"total": 120}'), NOW)
    tx(store, store.save_step, done(a, "charge", b"null", status="failed", error="E: x"), NOW)
    tx(store, store.save_step, done(a, "load#2", b"[1, 2]", attempts=3), NOW)
    tx(store, store.crashed, [a.run_id], alone=False, reason="killed", now=NOW)
    b = claim(store, a.run_id)
    memo = {m.key: (m.status, bytes(m.result), m.error, m.attempts) for m in b.memo}
    assert memo == {
        "load": ("completed", b'{"total": 120}', None, 1),
        "charge": ("failed", b"null", "E: x", 1),
        "load#2": ("completed", b"[1, 2]", None, 3),
    }


# -- save_step ----------------------------------------------------------------------------------


def test_save_step_checkpoints_in_order(store: Store) -> None:
    a = started(store)
    for key in ("b-step", "a-step", "b-step#2"):
        assert tx(store, store.save_step, done(a, key, b'"ok"'), NOW + 10) == STEP_SAVED
    got = run(store, a.run_id)["steps"]
    assert [s["key"] for s in got] == ["b-step", "a-step", "b-step#2"]
    first = got[0]
    assert (first["name"], first["kind"], first["status"]) == ("b-step", "run", "completed")
    assert raw(first["result"]) == b'"ok"'
    assert (first["error"], first["attempts"]) == (None, 1)
    assert first["started_at"] == iso(NOW)
    assert first["finished_at"] == iso(NOW + 5)
    assert status(store, a.run_id) == "running"


def test_save_step_with_a_stale_token_is_refused(store: Store) -> None:
    a = started(store)
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(a, "x", token=a.token + 1), NOW)
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(a, "x", token=a.token - 1), NOW)
    tx(store, store.recover, NOW)  # a new supervisor: the old worker's token is stale
    claim(store, a.run_id)
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(a, "x"), NOW)
    assert run(store, a.run_id)["steps"] == []


def test_save_step_for_an_unknown_or_unclaimed_run_is_refused(store: Store) -> None:
    rid = start(store)
    fake = Assign(rid, "fulfill-order", msgspec.Raw(b"null"), 1, 0, [])
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(fake, "x"), NOW)  # pending, never claimed
    ghost = Assign("ghost", "fulfill-order", msgspec.Raw(b"null"), 1, 1, [])
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(ghost, "x"), NOW)


# -- park: sleep --------------------------------------------------------------------------------


def test_park_sleep_parks_the_run(store: Store) -> None:
    a = started(store)
    assert (
        tx(store, store.park, park(a, "cool-down", "sleep", wake_at=NOW + 600_000), NOW, check)
        is None
    )
    obj = run(store, a.run_id)
    assert obj["status"] == "sleeping"
    assert obj["wake_at"] == iso(NOW + 600_000)
    [step] = obj["steps"]
    assert (step["key"], step["kind"], step["status"]) == ("cool-down", "sleep", "sleeping")
    assert step["finished_at"] is None
    assert tx(store, store.next_wake) == NOW + 600_000
    assert tx(store, store.claim, [a.run_id], NOW + 1) == []
    with pytest.raises(StaleClaim):  # the worker let go of it
        tx(store, store.save_step, done(a, "after"), NOW)


def test_a_sleep_already_due_returns_null_without_parking(store: Store) -> None:
    a = started(store)
    for key, wake_at in (("past", NOW - 1), ("now", NOW)):
        result = tx(store, store.park, park(a, key, "sleep", wake_at=wake_at), NOW, check)
        assert result == b"null"
    obj = run(store, a.run_id)
    assert obj["status"] == "running"
    assert obj["wake_at"] is None
    assert [(s["key"], s["status"]) for s in obj["steps"]] == [
        ("past", "completed"),
        ("now", "completed"),
    ]
    assert tx(store, store.save_step, done(a, "next"), NOW) == STEP_SAVED  # still held


def test_park_with_a_stale_token_is_refused(store: Store) -> None:
    a = started(store)
    tx(store, store.recover, NOW)
    with pytest.raises(StaleClaim):
        tx(store, store.park, park(a, "s", "sleep", wake_at=NOW + 1000), NOW, check)
    assert status(store, a.run_id) == "pending"


# -- park: wait and signals ------------------------------------------------------------------


def test_park_wait_without_a_signal_waits(store: Store) -> None:
    a = started(store)
    wait_on(store, a, "approval:order-42", timeout_at=NOW + DAY)
    obj = run(store, a.run_id)
    assert obj["status"] == "waiting"
    assert obj["waiting_for"] == "approval:order-42"
    assert obj["wake_at"] == iso(NOW + DAY)
    [step] = obj["steps"]
    assert (step["key"], step["name"], step["kind"], step["status"]) == (
        "approval:order-42",
        "approval:order-42",
        "wait",
        "waiting",
    )


def test_a_waiting_run_without_timeout_has_no_wake_time(store: Store) -> None:
    a = started(store)
    wait_on(store, a, "go")
    assert run(store, a.run_id)["wake_at"] is None
    assert tx(store, store.next_wake) is None


def test_signal_with_no_waiter_is_kept_and_consumed_once(store: Store) -> None:
    assert signal(store, "approve", b'{"ok": true}') == ([], True)
    a = started(store)
    got = tx(store, store.park, park(a, "approve", "wait", event="approve"), NOW + 10, check)
    assert got == b'{"ok": true}'
    assert status(store, a.run_id) == "running"  # it did not park
    step = steps(store, a.run_id)["approve"]
    assert step["status"] == "completed"
    assert raw(step["result"]) == b'{"ok": true}'
    # the kept signal was consumed: neither this run nor another gets it again
    got = tx(store, store.park, park(a, "approve#2", "wait", event="approve"), NOW + 20, check)
    assert got is None
    assert status(store, a.run_id) == "waiting"
    b = started(store)
    wait_on(store, b, "approve")
    assert status(store, b.run_id) == "waiting"


def test_kept_signals_are_consumed_in_order(store: Store) -> None:
    for n in (1, 2, 3):
        assert signal(store, "tick", str(n).encode()) == ([], True)
    results = []
    for _ in range(3):
        a = started(store)
        results.append(tx(store, store.park, park(a, "tick", "wait", event="tick"), NOW, check))
    assert results == [b"1", b"2", b"3"]


def test_signal_to_a_waiter_wakes_it_with_the_payload(store: Store) -> None:
    a = started(store)
    wait_on(store, a, "go", timeout_at=NOW + DAY)
    assert signal(store, "go", b'{"by": "u-7"}', now=NOW + 50) == ([a.run_id], False)
    obj = run(store, a.run_id)
    assert obj["status"] == "pending"
    assert obj["wake_at"] is None
    assert obj["waiting_for"] is None
    [step] = obj["steps"]
    assert step["status"] == "completed"
    assert raw(step["result"]) == b'{"by": "u-7"}'
    assert step["finished_at"] == iso(NOW + 50)
    assert tx(store, store.next_wake) is None  # the wait's timeout is gone
    b = claim(store, a.run_id)
    assert [(m.key, m.status, bytes(m.result)) for m in b.memo] == [
        ("go", "completed", b'{"by": "u-7"}')
    ]
    # the waiter was consumed: a second signal finds nobody and is kept
    assert signal(store, "go", b"2") == ([], True)


def test_signal_wakes_every_run_waiting_on_that_event(store: Store) -> None:
    waiting = [started(store) for _ in range(3)]
    for a in waiting:
        wait_on(store, a, "deploy-done")
    other = started(store)
    wait_on(store, other, "something-else")
    woken, kept = signal(store, "deploy-done", b"true")
    assert sorted(woken) == sorted(a.run_id for a in waiting)
    assert kept is False
    assert status(store, other.run_id) == "waiting"


def test_run_targeted_signal_wakes_only_that_run(store: Store) -> None:
    a, b = started(store), started(store)
    wait_on(store, a, "decision")
    wait_on(store, b, "decision")
    assert signal(store, "decision", b'"yes"', run_id=b.run_id) == ([b.run_id], False)
    assert status(store, a.run_id) == "waiting"
    assert status(store, b.run_id) == "pending"
    assert raw(steps(store, b.run_id)["decision"]["result"]) == b'"yes"'


def test_run_targeted_kept_signal_is_only_for_that_run(store: Store) -> None:
    a = start(store)
    assert signal(store, "decision", b'"for-a"', run_id=a) == ([], True)
    b = started(store)
    wait_on(store, b, "decision")  # b does not get a's signal
    assert status(store, b.run_id) == "waiting"
    a_claim = claim(store, a)
    got = tx(store, store.park, park(a_claim, "decision", "wait", event="decision"), NOW, check)
    assert got == b'"for-a"'


def test_signal_to_an_unknown_run_is_refused(store: Store) -> None:
    with pytest.raises(RunNotFound):
        signal(store, "e", b"1", run_id="nobody")
    c = started(store)
    wait_on(store, c, "e")
    assert signal(store, "e", b"1") == ([c.run_id], False)  # nothing was kept by the refusal


def test_kept_signal_expires_after_its_ttl(store: Store) -> None:
    assert signal(store, "soon", b"1", ttl_ms=1000, now=NOW) == ([], True)
    assert signal(store, "late", b"2", ttl_ms=1000, now=NOW) == ([], True)
    a = started(store)
    got = tx(store, store.park, park(a, "soon", "wait", event="soon"), NOW + 999, check)
    assert got == b"1"
    b = started(store)
    got = tx(store, store.park, park(b, "late", "wait", event="late"), NOW + 1000, check)
    assert got is None
    assert status(store, b.run_id) == "waiting"


def test_expire_signals_deletes_expired_ones(store: Store) -> None:
    signal(store, "e", b"1", ttl_ms=1000, now=NOW)
    signal(store, "e", b"2", ttl_ms=5000, now=NOW)
    tx(store, store.expire_signals, NOW + 1000)
    a = started(store)
    # the first has gone; the second is still there even at a time before the first expired
    assert tx(store, store.park, park(a, "e", "wait", event="e"), NOW, check) == b"2"


def test_signal_checked_against_the_waiters_type(store: Store) -> None:
    a = started(store)
    msg = park(a, "review", "wait", event="review", schema=DECISION_SCHEMA)
    assert tx(store, store.park, msg, NOW, check) is None
    # a broadcast that does not match is not delivered to that run (it is kept instead)
    assert signal(store, "review", b'{"kind": "maybe"}') == ([], True)
    assert status(store, a.run_id) == "waiting"
    # a run-targeted one is refused with the reason
    with pytest.raises(InvalidRequest, match=r"\$\.kind"):
        signal(store, "review", b'{"kind": 1}', run_id=a.run_id)
    assert status(store, a.run_id) == "waiting"
    assert signal(store, "review", b'{"kind": "approved"}') == ([a.run_id], False)


def test_kept_signal_of_the_wrong_type_is_skipped(store: Store) -> None:
    signal(store, "review", b'{"kind": "maybe"}')
    signal(store, "review", b'{"kind": "rejected"}')
    a = started(store)
    msg = park(a, "review", "wait", event="review", schema=DECISION_SCHEMA)
    assert tx(store, store.park, msg, NOW, check) == b'{"kind": "rejected"}'
    b = started(store)  # no type: takes the one the typed waiter skipped
    assert tx(store, store.park, park(b, "review", "wait", event="review"), NOW, check) == (
        b'{"kind": "maybe"}'
    )


# -- the timer: next_wake and wake_due ------------------------------------------------------


def test_wake_due_ends_a_sleep(store: Store) -> None:
    a = started(store)
    tx(store, store.park, park(a, "nap", "sleep", wake_at=NOW + 10_000), NOW, check)
    assert tx(store, store.wake_due, NOW + 9_999) == ([], [])
    assert status(store, a.run_id) == "sleeping"
    assert tx(store, store.wake_due, NOW + 10_000) == ([a.run_id], [])
    obj = run(store, a.run_id)
    assert (obj["status"], obj["wake_at"]) == ("pending", None)
    step = obj["steps"][0]
    assert step["status"] == "completed"
    assert raw(step["result"]) == b"null"
    assert step["finished_at"] == iso(NOW + 10_000)
    assert tx(store, store.next_wake) is None
    assert tx(store, store.wake_due, NOW + 20_000) == ([], [])  # fires once
    b = claim(store, a.run_id, NOW + 10_000)
    assert [(m.key, m.status) for m in b.memo] == [("nap", "completed")]


def test_wake_due_wakes_a_crowd_in_batches_earliest_first(store: Store) -> None:
    sleepers = [started(store) for _ in range(5)]
    for i, a in enumerate(sleepers):
        tx(store, store.park, park(a, "nap", "sleep", wake_at=NOW + 100 - i), NOW, check)
    order = [a.run_id for a in reversed(sleepers)]  # the last one is due first
    assert tx(store, store.wake_due, NOW + 100, limit=2) == (order[:2], [])
    assert tx(store, store.wake_due, NOW + 100, limit=2) == (order[2:4], [])
    assert tx(store, store.next_wake) == NOW + 100  # the scheduler calls again at once
    assert tx(store, store.wake_due, NOW + 100, limit=2) == (order[4:], [])
    assert tx(store, store.next_wake) is None
    assert {status(store, rid) for rid in order} == {"pending"}


def test_wake_due_times_out_a_wait_with_null(store: Store) -> None:
    a = started(store)
    wait_on(store, a, "approval", timeout_at=NOW + 5000)
    assert tx(store, store.next_wake) == NOW + 5000
    assert tx(store, store.wake_due, NOW + 5000) == ([a.run_id], [])
    obj = run(store, a.run_id)
    assert (obj["status"], obj["waiting_for"]) == ("pending", None)
    step = obj["steps"][0]
    assert step["status"] == "completed"
    assert raw(step["result"]) == b"null"
    # the waiter is gone: a late signal does not reach the run, it is kept
    assert signal(store, "approval", b"true", now=NOW + 6000) == ([], True)
    assert raw(steps(store, a.run_id)["approval"]["result"]) == b"null"


def test_wake_due_moves_a_retry_backoff_on_and_keeps_the_step_attempts(store: Store) -> None:
    a = started(store)
    msg = park(a, "charge", "retry", wake_at=NOW + 2000, attempts=1, error="IOError: down")
    assert tx(store, store.park, msg, NOW, check) is None
    assert status(store, a.run_id) == "sleeping"
    assert tx(store, store.wake_due, NOW + 2000) == ([a.run_id], [])
    b = claim(store, a.run_id, NOW + 2000)
    [m] = b.memo
    assert (m.key, m.status, m.error, m.attempts) == ("charge", "running", "IOError: down", 1)


def test_wake_due_readies_a_retry_of_the_whole_run(store: Store) -> None:
    a = started(store)
    out = tx(store, store.finish, finish(a, "failed", error="E"), NOW)
    assert out.wake_at is not None
    assert tx(store, store.wake_due, out.wake_at - 1) == ([], [])
    assert tx(store, store.wake_due, out.wake_at) == ([a.run_id], [])
    assert run(store, a.run_id)["wake_at"] is None


def test_wake_due_fails_a_run_past_its_deadline(store: Store) -> None:
    running = started(store, timeout_ms=60_000)
    sleeping = started(store, timeout_ms=60_000)
    tx(store, store.park, park(sleeping, "nap", "sleep", wake_at=NOW + DAY), NOW, check)
    pending = start(store, timeout_ms=120_000)
    assert tx(store, store.next_wake) == NOW + 60_000
    assert tx(store, store.wake_due, NOW + 59_999) == ([], [])
    ready, expired = tx(store, store.wake_due, NOW + 60_000)
    assert ready == []
    assert sorted(expired) == sorted([(running.run_id, "timeout"), (sleeping.run_id, "timeout")])
    for rid in (running.run_id, sleeping.run_id):
        obj = run(store, rid)
        assert (obj["status"], obj["error"], obj["wake_at"]) == ("failed", "timeout", None)
    assert status(store, pending) == "pending"
    assert tx(store, store.next_wake) == NOW + 120_000
    with pytest.raises(StaleClaim):  # the worker still running it is fenced off
        tx(store, store.save_step, done(running, "late"), NOW + 60_001)
    assert tx(store, store.wake_due, NOW + 120_000) == ([], [(pending, "timeout")])


def test_next_wake_is_the_earliest_of_wake_ups_and_deadlines(store: Store) -> None:
    assert tx(store, store.next_wake) is None
    assert read_next_wake(store.reader) is None
    start(store, delay_ms=50_000)
    start(store, timeout_ms=70_000)
    a = started(store)
    tx(store, store.park, park(a, "nap", "sleep", wake_at=NOW + 30_000), NOW, check)
    assert tx(store, store.next_wake) == NOW + 30_000
    assert read_next_wake(store.reader) == NOW + 30_000
    start(store, timeout_ms=20_000)
    assert tx(store, store.next_wake) == NOW + 20_000
    assert read_next_wake(store.reader) == NOW + 20_000


# -- finish ---------------------------------------------------------------------------------


def test_finish_completed_stores_the_result(store: Store) -> None:
    a = started(store, timeout_ms=DAY)
    tx(store, store.save_step, done(a, "s"), NOW)
    out = tx(store, store.finish, finish(a, "completed", b'{"shipped": 42}'), NOW + 100)
    assert out == Outcome(RunStatus.COMPLETED, 1, None)
    obj = run(store, a.run_id)
    assert obj["status"] == "completed"
    assert raw(obj["result"]) == b'{"shipped": 42}'
    assert (obj["error"], obj["wake_at"], obj["updated_at"]) == (None, None, iso(NOW + 100))
    assert tx(store, store.next_wake) is None  # its deadline no longer counts
    assert tx(store, store.claim, [a.run_id], NOW + DAY) == []
    with pytest.raises(StaleClaim):
        tx(store, store.finish, finish(a, "completed"), NOW)


def test_finish_failed_with_attempts_left_is_retried_later(store: Store) -> None:
    a = started(store, max_attempts=3)
    tx(store, store.save_step, done(a, "load", b"7"), NOW)
    tx(store, store.save_step, done(a, "charge", status="failed", error="E"), NOW)
    msg = finish(a, "failed", error="ValueError: bad", traceback="Traceback ...")
    out = tx(store, store.finish, msg, NOW)
    assert out.status == RunStatus.PENDING
    assert out.attempts == 2
    assert out.wake_at is not None
    assert NOW + 800 <= out.wake_at <= NOW + 1200  # 1 s ± 20 % after the first attempt
    obj = run(store, a.run_id)
    assert (obj["status"], obj["attempts"], obj["wake_at"]) == ("pending", 2, iso(out.wake_at))
    assert (obj["error"], obj["traceback"]) == ("ValueError: bad", "Traceback ...")
    assert [s["key"] for s in obj["steps"]] == ["load"]  # the failed step runs again
    assert tx(store, store.claim, [a.run_id], out.wake_at - 1) == []
    b = claim(store, a.run_id, out.wake_at)
    assert b.attempt == 2
    assert [m.key for m in b.memo] == ["load"]
    # second attempt: 2 s ± 20 %
    out2 = tx(store, store.finish, finish(b, "failed", error="again"), NOW + 5000)
    assert out2.wake_at is not None
    assert NOW + 5000 + 1600 <= out2.wake_at <= NOW + 5000 + 2400


def test_finish_failed_on_the_last_attempt_fails_the_run(store: Store) -> None:
    a = started(store, max_attempts=1)
    msg = finish(a, "failed", error="KeyError: 'x'", traceback="TB")
    assert tx(store, store.finish, msg, NOW) == Outcome(RunStatus.FAILED, 1, None)
    obj = run(store, a.run_id)
    assert (obj["status"], obj["error"], obj["traceback"]) == ("failed", "KeyError: 'x'", "TB")
    assert raw(obj["result"]) == b"null"
    assert tx(store, store.next_wake) is None


def test_finish_fatal_fails_at_once(store: Store) -> None:
    a = started(store, max_attempts=5)
    out = tx(store, store.finish, finish(a, "fatal", error="NonRetryable: no"), NOW)
    assert out == Outcome(RunStatus.FAILED, 1, None)
    assert (status(store, a.run_id), run(store, a.run_id)["error"]) == (
        "failed",
        "NonRetryable: no",
    )


def test_finish_cancelled_by_bail(store: Store) -> None:
    a = started(store, max_attempts=5)
    out = tx(store, store.finish, finish(a, "cancelled", error="rejected by u-7"), NOW)
    assert out.status == RunStatus.CANCELLED
    obj = run(store, a.run_id)
    assert (obj["status"], obj["error"]) == ("cancelled", "rejected by u-7")


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_pending_run(store: Store) -> None:
    rid = start(store, delay_ms=10_000)
    assert tx(store, store.cancel, rid, None, NOW + 1) == "cancelled"
    obj = run(store, rid)
    assert (obj["status"], obj["error"], obj["wake_at"]) == ("cancelled", "cancelled", None)
    assert tx(store, store.next_wake) is None
    assert tx(store, store.claim, [rid], NOW + 10_000) == []


def test_cancel_parked_runs(store: Store) -> None:
    sleeper, waiter = started(store), started(store)
    tx(store, store.park, park(sleeper, "nap", "sleep", wake_at=NOW + 1000), NOW, check)
    wait_on(store, waiter, "go", timeout_at=NOW + 2000)
    assert tx(store, store.cancel, sleeper.run_id, "no longer needed", NOW) == "cancelled"
    assert tx(store, store.cancel, waiter.run_id, None, NOW) == "cancelled"
    assert run(store, sleeper.run_id)["error"] == "no longer needed"
    assert tx(store, store.wake_due, NOW + 5000) == ([], [])
    assert signal(store, "go", b"1") == ([], True)  # the cancelled run no longer waits
    assert status(store, waiter.run_id) == "cancelled"


def test_cancel_a_running_run_stops_it_at_its_next_step(store: Store) -> None:
    a = started(store)
    assert tx(store, store.cancel, a.run_id, "operator said so", NOW) == "running"
    obj = run(store, a.run_id)
    assert (obj["status"], obj["cancel_requested"]) == ("running", True)
    assert tx(store, store.save_step, done(a, "step-1", b'"done"'), NOW + 1) == STEP_CANCELLED
    obj = run(store, a.run_id)
    assert obj["status"] == "cancelled"
    assert obj["error"] == "operator said so"
    assert obj["cancel_requested"] is False
    assert raw(obj["steps"][0]["result"]) == b'"done"'  # the step that ran is kept
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(a, "step-2"), NOW + 2)


def test_cancel_a_finished_run_is_not_allowed(store: Store) -> None:
    a = started(store)
    tx(store, store.finish, finish(a, "completed", b"1"), NOW)
    with pytest.raises(NotAllowed, match="completed"):
        tx(store, store.cancel, a.run_id, None, NOW)
    rid = start(store)
    tx(store, store.cancel, rid, None, NOW)
    with pytest.raises(NotAllowed):
        tx(store, store.cancel, rid, None, NOW)
    with pytest.raises(RunNotFound):
        tx(store, store.cancel, "nope", None, NOW)


async def test_cancel_requested_run_that_parks_ends_cancelled(store: Store) -> None:
    a = started(store)
    tx(store, store.cancel, a.run_id, "stop", NOW)
    committer = Committer(store.conn)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        msg = park(a, "nap", "sleep", wake_at=NOW + 1000)
        assert await committer.write(store.park, msg, NOW, check) == CANCELLED
        nursery.cancel_scope.cancel()
    obj = run(store, a.run_id)
    assert (obj["status"], obj["error"]) == ("cancelled", "stop")


def test_cancel_requested_run_that_fails_is_not_retried(store: Store) -> None:
    a = started(store, max_attempts=3)
    tx(store, store.cancel, a.run_id, "stop", NOW)
    tx(store, store.finish, finish(a, "failed", error="ValueError: x"), NOW + 1)
    obj = run(store, a.run_id)
    assert obj["status"] == "cancelled"
    assert obj["error"] == "stop"


# -- retry ------------------------------------------------------------------------------------


def test_retry_a_failed_run_keeps_its_finished_steps(store: Store) -> None:
    a = started(store, max_attempts=1)
    tx(store, store.save_step, done(a, "load", b'"order"'), NOW)
    tx(store, store.save_step, done(a, "charge", status="failed", error="E"), NOW)
    tx(store, store.finish, finish(a, "failed", error="StepFailed", traceback="TB"), NOW)
    assert status(store, a.run_id) == "failed"
    assert tx(store, store.retry, a.run_id, NOW + 10) is None
    obj = run(store, a.run_id)
    assert (obj["status"], obj["attempts"], obj["error"], obj["traceback"]) == (
        "pending",
        1,
        None,
        None,
    )
    assert [s["key"] for s in obj["steps"]] == ["load"]
    assert tx(store, store.ready_runs, NOW + 10) == [a.run_id]
    b = claim(store, a.run_id, NOW + 10)
    assert b.token > a.token
    assert [(m.key, m.status, bytes(m.result)) for m in b.memo] == [
        ("load", "completed", b'"order"')
    ]


def test_retry_a_cancelled_run(store: Store) -> None:
    a = started(store)
    wait_on(store, a, "go")
    tx(store, store.cancel, a.run_id, None, NOW)
    tx(store, store.retry, a.run_id, NOW)
    assert status(store, a.run_id) == "pending"
    assert run(store, a.run_id)["steps"] == []  # the unfinished wait is dropped
    b = claim(store, a.run_id)
    assert b.memo == []


@pytest.mark.parametrize("state", ["pending", "running", "completed"])
def test_retry_is_only_for_failed_or_cancelled_runs(store: Store, state: str) -> None:
    rid = start(store)
    if state != "pending":
        a = claim(store, rid)
        if state == "completed":
            tx(store, store.finish, finish(a, "completed"), NOW)
    with pytest.raises(NotAllowed, match=state):
        tx(store, store.retry, rid, NOW)
    assert status(store, rid) == state


def test_retry_an_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFound):
        tx(store, store.retry, "nope", NOW)


# -- crashes and recovery ---------------------------------------------------------------------


def test_crashed_not_alone_requeues_without_charge(store: Store) -> None:
    a, b = started(store), started(store)
    idle = start(store)
    requeued, failed = tx(
        store, store.crashed, [a.run_id, b.run_id, idle], alone=False, reason="SIGKILL", now=NOW
    )
    assert sorted(requeued) == sorted([a.run_id, b.run_id])  # the pending run is left alone
    assert failed == []
    for x in (a, b):
        obj = run(store, x.run_id)
        assert (obj["status"], obj["attempts"]) == ("pending", 1)
        with pytest.raises(StaleClaim):
            tx(store, store.save_step, done(x, "late"), NOW)
    assert claim(store, a.run_id).attempt == 1


def test_crashed_alone_is_charged_an_attempt(store: Store) -> None:
    a = started(store, max_attempts=3)
    assert tx(store, store.crashed, [a.run_id], alone=True, reason="oom", now=NOW) == (
        [a.run_id],
        [],
    )
    obj = run(store, a.run_id)
    assert (obj["status"], obj["attempts"]) == ("pending", 2)
    assert claim(store, a.run_id).attempt == 2


def test_crashed_alone_on_the_last_attempt_fails(store: Store) -> None:
    a = started(store, max_attempts=2)
    tx(store, store.crashed, [a.run_id], alone=True, reason="killed by SIGKILL", now=NOW)
    b = claim(store, a.run_id)
    requeued, failed = tx(
        store, store.crashed, [b.run_id], alone=True, reason="killed by SIGKILL", now=NOW
    )
    assert (requeued, failed) == ([], [a.run_id])
    obj = run(store, a.run_id)
    assert (obj["status"], obj["attempts"], obj["error"]) == ("failed", 2, "killed by SIGKILL")


def test_recover_requeues_running_runs_only(store: Store) -> None:
    a = started(store)
    sleeper = started(store)
    tx(store, store.park, park(sleeper, "nap", "sleep", wake_at=NOW + 1000), NOW, check)
    done_run = started(store)
    tx(store, store.finish, finish(done_run, "completed"), NOW)
    tx(store, store.recover, NOW + 5)
    assert status(store, a.run_id) == "pending"
    assert status(store, sleeper.run_id) == "sleeping"
    assert status(store, done_run.run_id) == "completed"
    assert tx(store, store.ready_runs, NOW + 5) == [a.run_id]
    with pytest.raises(StaleClaim):
        tx(store, store.save_step, done(a, "late"), NOW)


# -- prune --------------------------------------------------------------------------------------


def test_prune_deletes_old_finished_runs_with_their_steps(store: Store) -> None:
    old = started(store)
    tx(store, store.save_step, done(old, "s"), NOW)
    tx(store, store.finish, finish(old, "completed"), NOW)
    recent = started(store)
    tx(store, store.finish, finish(recent, "fatal", error="E"), NOW + DAY)
    pending = start(store)
    signal(store, "stale", b"1", ttl_ms=1000, now=NOW)
    signal(store, "fresh", b"2", ttl_ms=10 * DAY, now=NOW)
    assert tx(store, store.prune, NOW + 2000) == 1
    with pytest.raises(RunNotFound):
        run(store, old.run_id)
    assert (
        store.reader.execute(
            "SELECT COUNT(*) FROM steps WHERE run_id = ?", (old.run_id,)
        ).fetchone()[0]
        == 0
    )
    assert status(store, recent.run_id) == "failed"
    assert status(store, pending) == "pending"
    events = [r[0] for r in store.reader.execute("SELECT event FROM signals")]
    assert events == ["fresh"]
    assert tx(store, store.prune, NOW + 2000) == 0


# -- reading ----------------------------------------------------------------------------------


SPEC_RUN_KEYS = {
    "run_id",
    "workflow",
    "status",
    "payload",
    "result",
    "error",
    "traceback",
    "attempts",
    "created_at",
    "updated_at",
    "wake_at",
    "waiting_for",
    "steps",
}
SPEC_STEP_KEYS = {
    "key",
    "name",
    "kind",
    "status",
    "result",
    "error",
    "attempts",
    "started_at",
    "finished_at",
}


def test_read_run_has_the_spec_shape(store: Store) -> None:
    a = started(store)
    tx(store, store.save_step, done(a, "s"), NOW)
    obj = run(store, a.run_id)
    assert set(obj) >= SPEC_RUN_KEYS
    assert set(obj["steps"][0]) >= SPEC_STEP_KEYS
    assert "steps" not in read_run(store.reader, a.run_id, steps=False)
    encoded = json.loads(msgspec.json.encode(obj))  # the run object goes on the wire as is
    assert encoded["payload"] == {"order": 42}
    assert encoded["result"] is None
    with pytest.raises(RunNotFound):
        run(store, "nope")


def test_read_runs_newest_first_with_filters(store: Store) -> None:
    ids = [start(store, workflow="a" if n % 2 else "b", now=NOW + n) for n in range(6)]
    claim(store, ids[0])
    claim(store, ids[3])
    everything = read_runs(store.reader, status=None, workflow=None, limit=100)
    assert [r["run_id"] for r in everything] == ids[::-1]
    assert all("steps" not in r for r in everything)
    limited = read_runs(store.reader, status=None, workflow=None, limit=2)
    assert [r["run_id"] for r in limited] == [ids[5], ids[4]]
    running = read_runs(store.reader, status="running", workflow=None, limit=100)
    assert [r["run_id"] for r in running] == [ids[3], ids[0]]
    by_workflow = read_runs(store.reader, status=None, workflow="a", limit=100)
    assert [r["run_id"] for r in by_workflow] == [ids[5], ids[3], ids[1]]
    both = read_runs(store.reader, status="pending", workflow="b", limit=100)
    assert [r["run_id"] for r in both] == [ids[4], ids[2]]


def test_read_counts(store: Store) -> None:
    assert read_counts(store.reader) == {}
    for _ in range(3):
        start(store)
    a = started(store)
    b = started(store)
    tx(store, store.finish, finish(b, "completed"), NOW)
    wait_on(store, a, "go")
    assert read_counts(store.reader) == {"pending": 3, "waiting": 1, "completed": 1}


def test_iso() -> None:
    assert iso(None) is None
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(NOW + 7) == "2027-01-15T08:00:00.007Z"


# -- opening files ------------------------------------------------------------------------------


def test_a_new_store_is_marked_as_ours_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    s = Store(path)
    rid = start(s)
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    s = Store(path)
    try:
        assert status(s, rid) == "pending"
    finally:
        s.close()


def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
    conn.execute("INSERT INTO invoices (total) VALUES (120)")
    conn.commit()
    conn.close()


def _newer_tako(path: Path) -> None:
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(migrations()) + 1}")
    conn.close()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "not a tako database"),
        (lambda p: p.write_bytes(b"name,total\norder-42,120\n"), "not a tako database"),
        (lambda p: p.write_bytes(b"\0" * 4096), "not a tako database"),
        (_foreign_sqlite, "not created by tako"),
        (_newer_tako, "newer"),
    ],
    ids=["random-bytes", "csv-text", "zeros", "foreign-sqlite", "newer-tako"],
)
def test_a_file_that_is_not_our_database_is_refused_untouched(
    tmp_path: Path, make: Callable[[Path], Any], why: str
) -> None:
    path = tmp_path / "runs.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=why) as info:
        Store(path)
    assert info.value.code == "storage"
    assert str(path) in info.value.message
    assert path.read_bytes() == before


def test_a_one_byte_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"x")
    with pytest.raises(StoreError):
        Store(path).close()
    assert path.read_bytes() == b"x"


def test_an_empty_file_becomes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"")
    s = Store(path)
    try:
        assert tx(s, s.next_wake) is None
    finally:
        s.close()
    assert path.stat().st_size > 0


def test_open_read_only_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        open_read_only(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_read_only_connection_cannot_write(store: Store) -> None:
    start(store)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.reader.execute("DELETE FROM runs")
    assert sum(read_counts(store.reader).values()) == 1
