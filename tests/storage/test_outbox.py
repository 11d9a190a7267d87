"""The outbox of approval events through the storage seam: each change to a request
appends its event in the same transaction, per target, delivered in order."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tako._records import iso
from tako.takod.storage import Backend
from tako.takod.storage.interface import OutboxEvent
from tests.storage.kit import NOW, cancel, decide, events, parked, wake_due

MINUTE = 60_000


def signed(
    key: str, approvers: list[str] | None, deadline_at: int | None, created_at: int
) -> dict[str, dict[str, str]]:
    """Stands in for takod's link signer: says what it was given."""
    who = approvers or ["*"]
    return {a: {"view": f"{key}|{deadline_at}|{created_at}"} for a in who}


@pytest.fixture
def outbox(backend: Backend) -> Backend:
    """The backend with approval events going to two targets, links signed."""
    backend.events.targets = ("webhook", "notifiers")
    backend.events.links = signed
    return backend


async def due(b: Backend, target: str, now: int = NOW + 10 * MINUTE) -> list[OutboxEvent]:
    return await b.read(lambda r: r.due_events(target, now))


def body(event: OutboxEvent) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(event.body)
    return decoded


async def test_no_targets_no_events(backend: Backend) -> None:
    key = await parked(backend)
    await decide(backend, "approve", key, "alice")
    for target in ("webhook", "notifiers"):
        assert await due(backend, target) == []
        assert await backend.read(lambda r: r.next_attempt(target)) is None  # noqa: B023


async def test_a_new_request_is_announced_to_every_target(outbox: Backend) -> None:
    key = await parked(outbox, approvers=["alice"], timeout=60)
    for target in ("webhook", "notifiers"):
        [event] = await due(outbox, target)
        assert (event.event_id, event.attempts) == (f"{key}#1", 0)
        assert body(event) == {
            "id": f"{key}#1", "type": "requested", "at": iso(NOW), "key": key,
            "run_id": "refund-1", "workflow": "refund", "step": "manager", "status": "pending",
            "summary": "Refund $120", "data": {"order": 42, "amount": 120},
            "approvers": ["alice"], "required": 1, "approved_by": [], "decision": None,
            "deadline_at": iso(NOW + MINUTE),
            "links": {"alice": {"view": f"{key}|{NOW + MINUTE}|{NOW}"}},
        }  # fmt: skip
        assert await outbox.read(lambda r: r.next_attempt(target)) == NOW  # noqa: B023


async def test_events_go_out_in_order_one_at_a_time_per_request(outbox: Backend) -> None:
    key = await parked(outbox, approvers=["alice", "bob"])
    other = await parked(outbox, "refund-2")
    await decide(outbox, "approve", key, "alice")
    # per request, only its oldest undelivered event is due
    assert [e.event_id for e in await due(outbox, "webhook")] == [f"{key}#1", f"{other}#1"]
    await outbox.write(lambda tx: tx.mark_delivered("webhook", f"{key}#1", NOW + 5))
    # oldest first across requests too, in the order the changes were written
    [_, resolved] = await due(outbox, "webhook")
    assert [e.event_id for e in await due(outbox, "webhook")] == [f"{other}#1", f"{key}#2"]
    assert body(resolved)["type"] == "resolved"
    assert body(resolved)["status"] == "approved"
    assert body(resolved)["decision"]["by"] == "alice"
    assert body(resolved)["links"] is None  # a settled request has nothing to sign
    # each target has its own progress
    assert [e.event_id for e in await due(outbox, "notifiers")] == [f"{key}#1", f"{other}#1"]
    # delivering the `requested` event says so in the request's history
    assert await events(outbox, key) == [
        ("created", None), ("approved", "alice"), ("notified", None),
    ]  # fmt: skip


async def test_a_failed_delivery_is_retried_later(outbox: Backend) -> None:
    key = await parked(outbox)
    await outbox.write(
        lambda tx: tx.mark_failed("webhook", f"{key}#1", "HTTP 503", NOW + 5 * MINUTE)
    )
    assert await due(outbox, "webhook", NOW + 5 * MINUTE - 1) == []
    assert await outbox.read(lambda r: r.next_attempt("webhook")) == NOW + 5 * MINUTE
    [event] = await due(outbox, "webhook", NOW + 5 * MINUTE)
    assert (event.event_id, event.attempts) == (f"{key}#1", 1)
    assert [e.attempts for e in await due(outbox, "notifiers")] == [0]  # not the other target
    await outbox.write(lambda tx: tx.mark_delivered("webhook", f"{key}#1", NOW + 5 * MINUTE))
    assert await due(outbox, "webhook", NOW + 10 * MINUTE) == []
    assert await outbox.read(lambda r: r.next_attempt("webhook")) is None


async def test_reminders_escalations_and_the_end_are_events(outbox: Backend) -> None:
    key = await parked(
        outbox, approvers=["alice"], remind_every=60, escalate_after=60, escalate_to=["boss"]
    )
    await wake_due(outbox, NOW + MINUTE)
    await cancel(outbox, "refund-1", None, NOW + 2 * MINUTE)
    kinds = []
    while found := await due(outbox, "notifiers"):
        [event] = found
        kinds.append((event.event_id, body(event)["type"], body(event)["approvers"]))
        await outbox.write(lambda tx: tx.mark_delivered("notifiers", event.event_id, NOW))  # noqa: B023
    assert kinds == [
        (f"{key}#1", "requested", ["alice"]),
        (f"{key}#2", "escalated", ["alice", "boss"]),
        (f"{key}#3", "reminder", ["alice", "boss"]),
        (f"{key}#4", "resolved", ["alice", "boss"]),
    ]


async def test_an_event_is_written_only_with_its_change(outbox: Backend) -> None:
    """A refused decision changes nothing, so it announces nothing."""
    key = await parked(outbox, approvers=["alice"])
    with pytest.raises(Exception, match="mallory may not decide"):
        await decide(outbox, "approve", key, "mallory")
    await outbox.write(lambda tx: tx.mark_delivered("webhook", f"{key}#1", NOW))
    assert await due(outbox, "webhook") == []
