"""Waits and signals through the storage seam: parking on an event, kept signals,
run-targeted signals, typed waits, timeouts and expiry."""

from __future__ import annotations

from typing import Literal

import msgspec
import pytest

from tako._errors import InvalidRequest, RunNotFound
from tako._records import iso
from tako.takod.storage import Backend
from tako.takod.storage.interface import Delivered, Parked, ParkOutcome
from tests.storage.kit import (
    DAY,
    NOW,
    claim,
    next_wake,
    raw,
    run,
    signal,
    start,
    started,
    status,
    step,
    take,
    wait_on,
    wake_due,
)

KEPT = Delivered([], True)


class Decision(msgspec.Struct):
    kind: Literal["approved", "rejected"]


DECISION_SCHEMA = msgspec.json.schema(Decision)


async def test_park_wait_without_a_signal_waits(backend: Backend) -> None:
    a = await started(backend)
    await wait_on(backend, a, "approval:order-42", timeout_at=NOW + DAY)
    view = await run(backend, a.run_id)
    assert (view.status, view.waiting_for, view.wake_at) == (
        "waiting",
        "approval:order-42",
        iso(NOW + DAY),
    )
    [s] = view.steps or []
    assert (s.key, s.name, s.kind, s.status) == (
        "approval:order-42",
        "approval:order-42",
        "wait",
        "waiting",
    )
    assert await next_wake(backend) == NOW + DAY


async def test_a_waiting_run_without_timeout_has_no_wake_time(backend: Backend) -> None:
    a = await started(backend)
    await wait_on(backend, a, "go")
    assert (await run(backend, a.run_id)).wake_at is None
    assert await next_wake(backend) is None


async def test_signal_with_no_waiter_is_kept_and_consumed_once(backend: Backend) -> None:
    assert await signal(backend, "approve", b'{"ok": true}') == KEPT
    a = await started(backend)
    got = await take(backend, a, "approve", NOW + 10)
    assert got == Parked(ParkOutcome.GO_ON, b'{"ok": true}')
    assert await status(backend, a.run_id) == "running"  # it did not park
    s = await step(backend, a.run_id, "approve")
    assert (s.status, raw(s.result)) == ("completed", b'{"ok": true}')
    # the kept signal was consumed: neither this run nor another gets it again
    assert await take(backend, a, "approve#2", NOW + 20) == Parked(ParkOutcome.PARKED)
    assert await status(backend, a.run_id) == "waiting"
    b = await started(backend)
    await wait_on(backend, b, "approve")
    assert await status(backend, b.run_id) == "waiting"


async def test_kept_signals_are_consumed_in_order(backend: Backend) -> None:
    for n in (1, 2, 3):
        assert await signal(backend, "tick", str(n).encode()) == KEPT
    results = []
    for _ in range(3):
        a = await started(backend)
        results.append(await take(backend, a, "tick"))
    assert results == [Parked(ParkOutcome.GO_ON, n) for n in (b"1", b"2", b"3")]


async def test_signal_to_a_waiter_wakes_it_with_the_payload(backend: Backend) -> None:
    a = await started(backend)
    await wait_on(backend, a, "go", timeout_at=NOW + DAY)
    got = await signal(backend, "go", b'{"by": "u-7"}', now=NOW + 50)
    assert got == Delivered([a.run_id], False)
    view = await run(backend, a.run_id)
    assert (view.status, view.wake_at, view.waiting_for) == ("pending", None, None)
    [s] = view.steps or []
    assert (s.status, raw(s.result), s.finished_at) == (
        "completed",
        b'{"by": "u-7"}',
        iso(NOW + 50),
    )
    assert await next_wake(backend) is None  # the wait's timeout is gone
    b = await claim(backend, a.run_id)
    assert [(m.key, m.status, bytes(m.result)) for m in b.memo] == [
        ("go", "completed", b'{"by": "u-7"}')
    ]
    # the waiter was consumed: a second signal finds nobody and is kept
    assert await signal(backend, "go", b"2") == KEPT


async def test_signal_wakes_every_run_waiting_on_that_event(backend: Backend) -> None:
    waiting = [await started(backend) for _ in range(3)]
    for a in waiting:
        await wait_on(backend, a, "deploy-done")
    other = await started(backend)
    await wait_on(backend, other, "something-else")
    woken, kept = await signal(backend, "deploy-done", b"true")
    assert sorted(woken) == sorted(a.run_id for a in waiting)
    assert kept is False
    assert await status(backend, other.run_id) == "waiting"
    for a in waiting:
        assert raw((await step(backend, a.run_id, "deploy-done")).result) == b"true"


async def test_run_targeted_signal_wakes_only_that_run(backend: Backend) -> None:
    a, b = await started(backend), await started(backend)
    await wait_on(backend, a, "decision")
    await wait_on(backend, b, "decision")
    got = await signal(backend, "decision", b'"yes"', run_id=b.run_id)
    assert got == Delivered([b.run_id], False)
    assert await status(backend, a.run_id) == "waiting"
    assert await status(backend, b.run_id) == "pending"
    assert raw((await step(backend, b.run_id, "decision")).result) == b'"yes"'


async def test_run_targeted_kept_signal_is_only_for_that_run(backend: Backend) -> None:
    a = await start(backend)
    assert await signal(backend, "decision", b'"for-a"', run_id=a) == KEPT
    b = await started(backend)
    await wait_on(backend, b, "decision")  # b does not get a's signal
    assert await status(backend, b.run_id) == "waiting"
    a_claim = await claim(backend, a)
    assert await take(backend, a_claim, "decision") == Parked(ParkOutcome.GO_ON, b'"for-a"')


async def test_signal_to_an_unknown_run_is_refused(backend: Backend) -> None:
    with pytest.raises(RunNotFound):
        await signal(backend, "e", b"1", run_id="nobody")
    c = await started(backend)
    # nothing was kept by the refusal
    assert await take(backend, c, "e") == Parked(ParkOutcome.PARKED)
    assert await signal(backend, "e", b"1") == Delivered([c.run_id], False)


async def test_kept_signal_expires_after_its_ttl(backend: Backend) -> None:
    assert await signal(backend, "soon", b"1", ttl_ms=1000) == KEPT
    assert await signal(backend, "late", b"2", ttl_ms=1000) == KEPT
    a = await started(backend)
    assert await take(backend, a, "soon", NOW + 999) == Parked(ParkOutcome.GO_ON, b"1")
    b = await started(backend)
    assert await take(backend, b, "late", NOW + 1000) == Parked(ParkOutcome.PARKED)
    assert await status(backend, b.run_id) == "waiting"


async def test_expire_signals_deletes_expired_ones(backend: Backend) -> None:
    await signal(backend, "e", b"1", ttl_ms=1000)
    await signal(backend, "e", b"2", ttl_ms=5000)
    await backend.write(lambda tx: tx.expire_signals(NOW + 1000))
    a = await started(backend)
    # the first has gone; the second is still there even at a time before the first expired
    assert await take(backend, a, "e", NOW) == Parked(ParkOutcome.GO_ON, b"2")


async def test_signal_checked_against_the_waiters_type(backend: Backend) -> None:
    a = await started(backend)
    assert await take(backend, a, "review", schema=DECISION_SCHEMA) == Parked(ParkOutcome.PARKED)
    # a broadcast that does not match is not delivered to that run (it is kept instead)
    assert await signal(backend, "review", b'{"kind": "maybe"}') == KEPT
    assert await status(backend, a.run_id) == "waiting"
    # a run-targeted one is refused with the reason, and kept nowhere
    with pytest.raises(InvalidRequest, match=r"\$\.kind"):
        await signal(backend, "review", b'{"kind": 1}', run_id=a.run_id)
    assert await status(backend, a.run_id) == "waiting"
    got = await signal(backend, "review", b'{"kind": "approved"}')
    assert got == Delivered([a.run_id], False)
    untyped = await started(backend)  # the broadcast the typed waiter refused is still kept
    assert await take(backend, untyped, "review") == Parked(ParkOutcome.GO_ON, b'{"kind": "maybe"}')
    again = await started(backend)  # and that was the only one kept
    assert await take(backend, again, "review") == Parked(ParkOutcome.PARKED)


async def test_kept_signal_of_the_wrong_type_is_skipped(backend: Backend) -> None:
    await signal(backend, "review", b'{"kind": "maybe"}')
    await signal(backend, "review", b'{"kind": "rejected"}')
    a = await started(backend)
    got = await take(backend, a, "review", schema=DECISION_SCHEMA)
    assert got == Parked(ParkOutcome.GO_ON, b'{"kind": "rejected"}')
    b = await started(backend)  # no type: takes the one the typed waiter skipped
    assert await take(backend, b, "review") == Parked(ParkOutcome.GO_ON, b'{"kind": "maybe"}')


async def test_wake_due_times_out_a_wait_with_null(backend: Backend) -> None:
    a = await started(backend)
    await wait_on(backend, a, "approval", timeout_at=NOW + 5000)
    assert await next_wake(backend) == NOW + 5000
    assert await wake_due(backend, NOW + 4999) == ([], [])
    assert await wake_due(backend, NOW + 5000) == ([a.run_id], [])
    view = await run(backend, a.run_id)
    assert (view.status, view.waiting_for) == ("pending", None)
    [s] = view.steps or []
    assert (s.status, raw(s.result), s.error) == ("completed", b"null", "timed out")
    # the waiter is gone: a late signal does not reach the run, it is kept
    assert await signal(backend, "approval", b"true", now=NOW + 6000) == KEPT
    assert raw((await step(backend, a.run_id, "approval")).result) == b"null"
